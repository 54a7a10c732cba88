"""The real-drive driver's ioctl numbers and struct layouts match <linux/mtio.h> (spec §2.1, §2.5).

A C probe is compiled with gcc against the installed kernel header; skipped cleanly when gcc or
the header is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reference.drivers import st

PROBE = r"""
#include <stdio.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/mtio.h>
int main(void) {
    printf("MTIOCTOP %lu\nMTIOCGET %lu\nMTIOCPOS %lu\n",
           (unsigned long)MTIOCTOP, (unsigned long)MTIOCGET, (unsigned long)MTIOCPOS);
    printf("sizeof_mtop %zu\nsizeof_mtget %zu\nsizeof_mtpos %zu\n",
           sizeof(struct mtop), sizeof(struct mtget), sizeof(struct mtpos));
    printf("mtop.mt_op %zu\nmtop.mt_count %zu\n",
           offsetof(struct mtop, mt_op), offsetof(struct mtop, mt_count));
    printf("mtget.mt_type %zu\nmtget.mt_resid %zu\nmtget.mt_dsreg %zu\nmtget.mt_gstat %zu\n"
           "mtget.mt_erreg %zu\nmtget.mt_fileno %zu\nmtget.mt_blkno %zu\n",
           offsetof(struct mtget, mt_type), offsetof(struct mtget, mt_resid),
           offsetof(struct mtget, mt_dsreg), offsetof(struct mtget, mt_gstat),
           offsetof(struct mtget, mt_erreg), offsetof(struct mtget, mt_fileno),
           offsetof(struct mtget, mt_blkno));
    printf("MTWEOFI %d\nMTSEEK %d\nMTEOM %d\nGMT_BOT %lu\nGMT_DR_OPEN %lu\n", MTWEOFI, MTSEEK, MTEOM,
           (unsigned long)GMT_BOT(0xffffffffUL), (unsigned long)GMT_DR_OPEN(0xffffffffUL));
    return 0;
}
"""


@pytest.fixture(scope="module")
def header_facts(tmp_path_factory) -> dict[str, int]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    if not Path("/usr/include/linux/mtio.h").exists():
        pytest.skip("<linux/mtio.h> not installed")
    work = tmp_path_factory.mktemp("probe")
    (work / "probe.c").write_text(PROBE)
    built = subprocess.run([gcc, "-o", str(work / "probe"), str(work / "probe.c")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"probe does not compile: {built.stderr.strip()[:200]}")
    output = subprocess.run([str(work / "probe")], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for name, value in (line.split() for line in output.splitlines())}


def test_ioctl_numbers_match_the_kernel_header(header_facts):
    assert st.MTIOCTOP == header_facts["MTIOCTOP"]
    assert st.MTIOCGET == header_facts["MTIOCGET"]
    assert st.MTIOCPOS == header_facts["MTIOCPOS"]


def test_struct_layouts_match_the_kernel_header(header_facts):
    assert st.MTOP.size == header_facts["sizeof_mtop"]
    assert st.MTGET.size == header_facts["sizeof_mtget"]
    assert st.MTPOS.size == header_facts["sizeof_mtpos"]
    packed = st.MTOP.pack(0x1234, 0x56789ABC)
    assert packed[header_facts["mtop.mt_op"]:][:2] == (0x1234).to_bytes(2, "little")
    assert packed[header_facts["mtop.mt_count"]:][:4] == (0x56789ABC).to_bytes(4, "little")
    values = list(range(1, 8))
    raw = st.MTGET.pack(*values)
    for field, value in zip(st.MTGET_FIELDS, values):
        offset = header_facts[f"mtget.{field}"]
        width = 4 if field in ("mt_fileno", "mt_blkno") else st.MTPOS.size
        assert int.from_bytes(raw[offset:offset + width], "little") == value, field


def test_op_codes_and_gstat_bits_match_the_protocol(header_facts):
    from reference.protocols.tape import Gstat, MtOp

    assert MtOp.MTWEOFI == header_facts["MTWEOFI"] and MtOp.MTSEEK == header_facts["MTSEEK"]
    assert MtOp.MTEOM == header_facts["MTEOM"]
    assert Gstat.BOT == header_facts["GMT_BOT"] and Gstat.DR_OPEN == header_facts["GMT_DR_OPEN"]


def test_ioc_computes_other_architectures():
    """Spec §2.1: i386 values differ by struct size; PowerPC uses 3 direction bits."""
    assert st._ior("m", 2, 28, machine="i686") == 0x801C6D02
    assert st._ior("m", 3, 4, machine="i686") == 0x80046D03
    assert st._iow("m", 1, 8, machine="ppc64le") == 0x80086D01
    assert st._ior("m", 2, 48, machine="ppc64le") == 0x40306D02


def test_driver_issues_real_ioctls(tmp_path):
    """Without a drive: the ioctls reach the kernel, which refuses them on a plain file (ENOTTY)."""
    import errno

    from reference.protocols.tape import MtOp

    path = tmp_path / "not-a-tape"
    path.write_bytes(b"")
    with st.LinuxStDrive(str(path), write=True) as device:
        assert device.write(b"block") == 5
        for call in (device.status, device.tell, lambda: device.mtop(MtOp.MTREW)):
            with pytest.raises(OSError) as refused:
                call()
            assert refused.value.errno == errno.ENOTTY
    assert device.closed


def test_mt_command_on_a_character_device_uses_the_st_driver(capsys):
    from reference.cli.main import main

    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    assert main(["mt", "-f", "/dev/null", "status"]) == 1
    assert "Inappropriate ioctl for device" in capsys.readouterr().err
