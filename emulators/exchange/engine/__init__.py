"""The emulated ESE storage engine: page files holding a record heap, transaction logs in
generations, checkpoint, soft and hard recovery."""
