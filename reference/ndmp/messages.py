"""The NDMP v4 message bodies, declared once with the XDR combinators, and the message table.

Each struct is a dataclass whose fields default to zero values, e.g. ``DataStartBackupRequest(
butype_name="tar", env=[Pval("FILESYSTEM", "/x")])``. Unions are ``(discriminant, value)`` pairs.
``MESSAGES[code]`` gives the request (or post) body type and the reply body type; ``None`` means the
message has no body in that direction; posts have no reply (``is_post``).
Layout follows draft-skardal-ndmpv4-04 / ``ndmp4.x`` field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import constants as c
from .xdr import (Array, Enum, Opaque, Short, String, UChar, UInt, UQuad, UShort, Union,
                  xdr_struct)

E = Enum(c.Error)


@xdr_struct(sequence=UInt(), time_stamp=UInt(), message_type=c.MessageType, message_code=UInt(),
            reply_sequence=UInt(), error_code=E)
class Header:
    """``ndmp4_header``; message_code stays a plain int so unknown codes still decode."""


HEADER_SIZE = 24


@xdr_struct(name=String(), value=String())
class Pval:
    pass


# --- CONNECT ---------------------------------------------------------------------------------------

@xdr_struct(protocol_version=UShort())
class ConnectOpenRequest:
    pass


@xdr_struct(error=E)
class ErrorReply:
    """The many replies that carry only ``error``."""


@xdr_struct(auth_id=String(), auth_password=String())
class AuthText:
    def __repr__(self) -> str:  # never show a password in a log line or a traceback
        return f"AuthText(auth_id={self.auth_id!r}, auth_password=<hidden>)"


@xdr_struct(auth_id=String(), auth_digest=Opaque(fixed=c.MD5_DIGEST_LENGTH))
class AuthMd5:
    def __repr__(self) -> str:
        return f"AuthMd5(auth_id={self.auth_id!r}, auth_digest=<hidden>)"


AuthData = Union("ndmp4_auth_data", Enum(c.AuthType),
                 {c.AuthType.NONE: None, c.AuthType.TEXT: AuthText, c.AuthType.MD5: AuthMd5})
AuthAttr = Union("ndmp4_auth_attr", Enum(c.AuthType),
                 {c.AuthType.NONE: None, c.AuthType.TEXT: None,
                  c.AuthType.MD5: Opaque(fixed=c.MD5_CHALLENGE_LENGTH)})


@xdr_struct(auth_data=AuthData)
class ConnectClientAuthRequest:
    def __repr__(self) -> str:
        return f"ConnectClientAuthRequest(auth_type={self.auth_data[0]!r}, <credentials hidden>)"


@xdr_struct(client_attr=AuthAttr)
class ConnectServerAuthRequest:
    pass


@xdr_struct(error=E, server_result=AuthData)
class ConnectServerAuthReply:
    pass


# --- CONFIG ----------------------------------------------------------------------------------------

@xdr_struct(error=E, hostname=String(), os_type=String(), os_vers=String(), hostid=String())
class ConfigGetHostInfoReply:
    pass


@xdr_struct(error=E, vendor_name=String(), product_name=String(), revision_number=String(),
            auth_type=Array(Enum(c.AuthType)))
class ConfigGetServerInfoReply:
    pass


@xdr_struct(error=E, addr_types=Array(Enum(c.AddrType)))
class ConfigGetConnectionTypeReply:
    pass


@xdr_struct(auth_type=c.AuthType)
class ConfigGetAuthAttrRequest:
    pass


@xdr_struct(error=E, server_attr=AuthAttr)
class ConfigGetAuthAttrReply:
    pass


@xdr_struct(butype_name=String(), default_env=Array(Pval), attrs=UInt())
class ButypeInfo:
    pass


@xdr_struct(error=E, butype_info=Array(ButypeInfo))
class ConfigGetButypeInfoReply:
    pass


@xdr_struct(unsupported=UInt(), fs_type=String(), fs_logical_device=String(),
            fs_physical_device=String(), total_size=UQuad(), used_size=UQuad(), avail_size=UQuad(),
            total_inodes=UQuad(), used_inodes=UQuad(), fs_env=Array(Pval), fs_status=String())
class FsInfo:
    pass


@xdr_struct(error=E, fs_info=Array(FsInfo))
class ConfigGetFsInfoReply:
    pass


@xdr_struct(device=String(), attr=UInt(), capability=Array(Pval))
class DeviceCapability:
    pass


@xdr_struct(model=String(), caplist=Array(DeviceCapability))
class DeviceInfo:
    pass


@xdr_struct(error=E, tape_info=Array(DeviceInfo))
class ConfigGetTapeInfoReply:
    pass


@xdr_struct(error=E, scsi_info=Array(DeviceInfo))
class ConfigGetScsiInfoReply:
    pass


@xdr_struct(class_id=UShort(), class_version=Array(UShort()))
class ClassList:
    pass


@xdr_struct(error=E, class_list=Array(ClassList))
class ConfigGetExtListReply:
    pass


@xdr_struct(error=E, ndmp4_accepted_ext=Array(ClassList))
class ConfigSetExtListRequest:
    pass


# --- SCSI / EXECUTE_CDB ----------------------------------------------------------------------------

@xdr_struct(device=String())
class DeviceOpenRequest:
    """``ndmp4_scsi_open_request``."""


@xdr_struct(error=E, target_controller=Short(), target_id=Short(), target_lun=Short())
class ScsiGetStateReply:
    pass


@xdr_struct(flags=UInt(), timeout=UInt(), datain_len=UInt(), cdb=Opaque(), dataout=Opaque())
class ExecuteCdbRequest:
    pass


@xdr_struct(error=E, status=UChar(), dataout_len=UInt(), datain=Opaque(), ext_sense=Opaque())
class ExecuteCdbReply:
    pass


# --- TAPE ------------------------------------------------------------------------------------------

@xdr_struct(device=String(), mode=c.TapeOpenMode)
class TapeOpenRequest:
    pass


@xdr_struct(unsupported=UInt(), error=E, flags=UInt(), file_num=UInt(), soft_errors=UInt(),
            block_size=UInt(), blockno=UInt(), total_space=UQuad(), space_remain=UQuad())
class TapeGetStateReply:
    pass


@xdr_struct(tape_op=c.TapeMtioOp, count=UInt())
class TapeMtioRequest:
    pass


@xdr_struct(error=E, resid_count=UInt())
class TapeMtioReply:
    pass


@xdr_struct(data_out=Opaque())
class TapeWriteRequest:
    pass


@xdr_struct(error=E, count=UInt())
class TapeWriteReply:
    pass


@xdr_struct(count=UInt())
class TapeReadRequest:
    pass


@xdr_struct(error=E, data_in=Opaque())
class TapeReadReply:
    pass


# --- addresses -------------------------------------------------------------------------------------

@xdr_struct(ip_addr=UInt(), port=UShort(), addr_env=Array(Pval))
class TcpAddr:
    """``ip_addr`` is the IPv4 address as a host-order integer (127.0.0.1 = 0x7F000001)."""


@xdr_struct(comm_data=Opaque())
class IpcAddr:
    pass


Addr = Union("ndmp4_addr", Enum(c.AddrType),
             {c.AddrType.LOCAL: None, c.AddrType.TCP: Array(TcpAddr), c.AddrType.IPC: IpcAddr})


# --- DATA ------------------------------------------------------------------------------------------

@xdr_struct(unsupported=UInt(), error=E, operation=c.DataOperation, state=c.DataState,
            halt_reason=c.DataHaltReason, bytes_processed=UQuad(), est_bytes_remain=UQuad(),
            est_time_remain=UInt(), data_connection_addr=Addr, read_offset=UQuad(),
            read_length=UQuad())
class DataGetStateReply:
    pass


@xdr_struct(addr_type=c.AddrType)
class DataListenRequest:
    pass


@xdr_struct(error=E, connect_addr=Addr)
class ListenReply:
    """``ndmp4_data_listen_reply`` and ``ndmp4_mover_listen_reply``."""


@xdr_struct(addr=Addr)
class DataConnectRequest:
    pass


@xdr_struct(butype_name=String(), env=Array(Pval))
class DataStartBackupRequest:
    pass


@xdr_struct(original_path=String(), destination_path=String(), name=String(), other_name=String(),
            node=UQuad(), fh_info=UQuad())
class Name:
    """``ndmp4_name``: one entry of a recover name list."""


@xdr_struct(env=Array(Pval), nlist=Array(Name), butype_name=String())
class DataStartRecoverRequest:
    """Also the body of DATA_START_RECOVER_FILEHIST."""


@xdr_struct(error=E, env=Array(Pval))
class DataGetEnvReply:
    pass


# --- MOVER -----------------------------------------------------------------------------------------

@xdr_struct(len=UInt())
class MoverSetRecordSizeRequest:
    pass


@xdr_struct(offset=UQuad(), length=UQuad())
class OffsetLength:
    """``ndmp4_mover_set_window_request``, ``ndmp4_mover_read_request``, ``notify_data_read_post``."""


@xdr_struct(mode=c.MoverMode, addr=Addr)
class MoverConnectRequest:
    pass


@xdr_struct(mode=c.MoverMode, addr_type=c.AddrType)
class MoverListenRequest:
    pass


@xdr_struct(error=E, mode=c.MoverMode, state=c.MoverState, pause_reason=c.MoverPauseReason,
            halt_reason=c.MoverHaltReason, record_size=UInt(), record_num=UInt(), bytes_moved=UQuad(),
            seek_position=UQuad(), bytes_left_to_read=UQuad(), window_offset=UQuad(),
            window_length=UQuad(), data_connection_addr=Addr)
class MoverGetStateReply:
    pass


# --- NOTIFY / LOG / FH (posts) ---------------------------------------------------------------------

@xdr_struct(reason=c.DataHaltReason)
class NotifyDataHalted:
    pass


@xdr_struct(reason=c.ConnectionStatus, protocol_version=UShort(), text_reason=String())
class NotifyConnectionStatus:
    pass


@xdr_struct(reason=c.MoverHaltReason)
class NotifyMoverHalted:
    pass


@xdr_struct(reason=c.MoverPauseReason, seek_position=UQuad())
class NotifyMoverPaused:
    pass


@xdr_struct(log_type=c.LogType, message_id=UInt(), entry=String(),
            associated_message_valid=c.HasAssociatedMessage, associated_message_sequence=UInt())
class LogMessage:
    pass


@xdr_struct(name=String(), recovery_status=c.RecoveryStatus)
class LogFile:
    pass


@xdr_struct(nt_path=String(), dos_path=String())
class NtPath:
    pass


FileName = Union("ndmp4_file_name", Enum(c.FsType),
                 {c.FsType.UNIX: String(), c.FsType.NT: NtPath}, default_arm=String())


@xdr_struct(unsupported=UInt(), fs_type=c.FsType, ftype=c.FileType, mtime=UInt(), atime=UInt(),
            ctime=UInt(), owner=UInt(), group=UInt(), fattr=UInt(), size=UQuad(), links=UInt())
class FileStat:
    pass


@xdr_struct(names=Array(FileName), stats=Array(FileStat), node=UQuad(), fh_info=UQuad())
class File:
    pass


@xdr_struct(files=Array(File))
class FhAddFile:
    pass


@xdr_struct(names=Array(FileName), node=UQuad(), parent=UQuad())
class Dir:
    pass


@xdr_struct(dirs=Array(Dir))
class FhAddDir:
    pass


@xdr_struct(stats=Array(FileStat), node=UQuad(), fh_info=UQuad())
class Node:
    pass


@xdr_struct(nodes=Array(Node))
class FhAddNode:
    pass


# --- mailtape extension ----------------------------------------------------------------------------

@xdr_struct(env=Array(Pval))
class MailtapeDataCommitRequest:
    """The DMA tells the Data server the backup it just took is committed (docs/ndmp.md)."""


# --- the table -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MessageSpec:
    code: int
    request: Any  # body type of the request or post; None = empty body
    reply: Any  # body type of the reply; None = empty body
    is_post: bool = False

    @property
    def name(self) -> str:
        return message_name(self.code)


def message_name(code: int) -> str:
    try:
        return c.Message(code).name
    except ValueError:
        return f"0x{code:X}"


M = c.Message
_TABLE = [
    (M.CONNECT_OPEN, ConnectOpenRequest, ErrorReply),
    (M.CONNECT_CLIENT_AUTH, ConnectClientAuthRequest, ErrorReply),
    (M.CONNECT_CLOSE, None, None),
    (M.CONNECT_SERVER_AUTH, ConnectServerAuthRequest, ConnectServerAuthReply),
    (M.CONFIG_GET_HOST_INFO, None, ConfigGetHostInfoReply),
    (M.CONFIG_GET_CONNECTION_TYPE, None, ConfigGetConnectionTypeReply),
    (M.CONFIG_GET_AUTH_ATTR, ConfigGetAuthAttrRequest, ConfigGetAuthAttrReply),
    (M.CONFIG_GET_BUTYPE_INFO, None, ConfigGetButypeInfoReply),
    (M.CONFIG_GET_FS_INFO, None, ConfigGetFsInfoReply),
    (M.CONFIG_GET_TAPE_INFO, None, ConfigGetTapeInfoReply),
    (M.CONFIG_GET_SCSI_INFO, None, ConfigGetScsiInfoReply),
    (M.CONFIG_GET_SERVER_INFO, None, ConfigGetServerInfoReply),
    (M.CONFIG_SET_EXT_LIST, ConfigSetExtListRequest, ErrorReply),
    (M.CONFIG_GET_EXT_LIST, None, ConfigGetExtListReply),
    (M.SCSI_OPEN, DeviceOpenRequest, ErrorReply),
    (M.SCSI_CLOSE, None, ErrorReply),
    (M.SCSI_GET_STATE, None, ScsiGetStateReply),
    (M.SCSI_RESET_DEVICE, None, ErrorReply),
    (M.SCSI_EXECUTE_CDB, ExecuteCdbRequest, ExecuteCdbReply),
    (M.TAPE_OPEN, TapeOpenRequest, ErrorReply),
    (M.TAPE_CLOSE, None, ErrorReply),
    (M.TAPE_GET_STATE, None, TapeGetStateReply),
    (M.TAPE_MTIO, TapeMtioRequest, TapeMtioReply),
    (M.TAPE_WRITE, TapeWriteRequest, TapeWriteReply),
    (M.TAPE_READ, TapeReadRequest, TapeReadReply),
    (M.TAPE_EXECUTE_CDB, ExecuteCdbRequest, ExecuteCdbReply),
    (M.DATA_GET_STATE, None, DataGetStateReply),
    (M.DATA_START_BACKUP, DataStartBackupRequest, ErrorReply),
    (M.DATA_START_RECOVER, DataStartRecoverRequest, ErrorReply),
    (M.DATA_ABORT, None, ErrorReply),
    (M.DATA_GET_ENV, None, DataGetEnvReply),
    (M.DATA_STOP, None, ErrorReply),
    (M.DATA_LISTEN, DataListenRequest, ListenReply),
    (M.DATA_CONNECT, DataConnectRequest, ErrorReply),
    (M.DATA_START_RECOVER_FILEHIST, DataStartRecoverRequest, ErrorReply),
    (M.MOVER_GET_STATE, None, MoverGetStateReply),
    (M.MOVER_LISTEN, MoverListenRequest, ListenReply),
    (M.MOVER_CONTINUE, None, ErrorReply),
    (M.MOVER_ABORT, None, ErrorReply),
    (M.MOVER_STOP, None, ErrorReply),
    (M.MOVER_SET_WINDOW, OffsetLength, ErrorReply),
    (M.MOVER_READ, OffsetLength, ErrorReply),
    (M.MOVER_CLOSE, None, ErrorReply),
    (M.MOVER_SET_RECORD_SIZE, MoverSetRecordSizeRequest, ErrorReply),
    (M.MOVER_CONNECT, MoverConnectRequest, ErrorReply),
    (M.MAILTAPE_DATA_COMMIT, MailtapeDataCommitRequest, ErrorReply),
]
_POSTS = [
    (M.NOTIFY_DATA_HALTED, NotifyDataHalted),
    (M.NOTIFY_CONNECTION_STATUS, NotifyConnectionStatus),
    (M.NOTIFY_MOVER_HALTED, NotifyMoverHalted),
    (M.NOTIFY_MOVER_PAUSED, NotifyMoverPaused),
    (M.NOTIFY_DATA_READ, OffsetLength),
    (M.LOG_FILE, LogFile),
    (M.LOG_MESSAGE, LogMessage),
    (M.FH_ADD_FILE, FhAddFile),
    (M.FH_ADD_DIR, FhAddDir),
    (M.FH_ADD_NODE, FhAddNode),
]

MESSAGES: dict[int, MessageSpec] = {int(code): MessageSpec(int(code), req, rep) for code, req, rep in _TABLE}
MESSAGES.update({int(code): MessageSpec(int(code), body, None, is_post=True) for code, body in _POSTS})


def reply_with_error(code: int, error: int) -> Any:
    """A reply body for ``code`` carrying ``error`` (every NDMP v4 reply has an ``error`` field)."""
    reply_type = MESSAGES[code].reply
    if reply_type is None:
        return None
    body = reply_type()
    body.error = error
    return body
