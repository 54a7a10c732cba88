"""NDMP v4: XDR wire layer, record marking, an asyncio server framework with auth, the Data service
the Exchange agent plugs into, the Tape service and Mover over a TapeDevice, and a synchronous DMA
client. See docs/ndmp.md."""
