"""``mailtape eseutil``: header dumps of ESE files, like Exchange's ``eseutil /mh /ml /mk``.

    mailtape eseutil --mh priv1.edb      database (or streaming file / backup stream) header
    mailtape eseutil --ml E0000001.log   log file header, attached databases, integrity check
    mailtape eseutil --mk E00.chk        checkpoint file
    mailtape eseutil --k priv1.edb       verify every page checksum

The Windows spellings ``/mh``, ``/ml``, ``/mk``, ``/k`` are accepted too.
"""

from __future__ import annotations

import os
import sys

import click

from reference.errors import CorruptDataError, NotFoundError, UsageError

MODES = {"/mh": "--mh", "/ml": "--ml", "/mk": "--mk", "/k": "--k"}


class _EseutilCommand(click.Command):
    def parse_args(self, ctx, args):
        args = [MODES.get(a.lower(), a) for a in args]
        return super().parse_args(ctx, args)


@click.command("eseutil", cls=_EseutilCommand)
@click.option("--mh", "database", metavar="DB", help="Dump a database header (/mh).")
@click.option("--ml", "log", metavar="LOG", help="Dump a log file header (/ml).")
@click.option("--mk", "checkpoint", metavar="CHK", help="Dump a checkpoint file (/mk).")
@click.option("--k", "verify", metavar="DB", help="Verify the page checksums of a database (/k).")
def command(database, log, checkpoint, verify):
    """Dump ESE database, log and checkpoint headers (eseutil /mh /ml /mk /k)."""
    from emulators.exchange.ondisk import dump

    given = [(m, p) for m, p in (("mh", database), ("ml", log), ("mk", checkpoint), ("k", verify)) if p]
    if len(given) != 1:
        raise UsageError("give exactly one of --mh DB, --ml LOG, --mk CHK, --k DB (or /mh, /ml, /mk, /k)")
    mode, path = given[0]
    if not os.path.isfile(path):
        raise NotFoundError(f"{path}: no such file")
    try:
        if mode == "mh":
            out = dump.dump_database(path)
        elif mode == "ml":
            out = dump.dump_log(path)
        elif mode == "mk":
            out = dump.dump_checkpoint(path)
        else:
            n, bad = dump.verify_pages(path)
            if bad:
                raise CorruptDataError(f"{len(bad)} of {n} pages failed checksum verification "
                                       f"(first pgno {bad[0]}, -1018 JET_errReadVerifyFailure)", where=path)
            out = f"Checksum verification of {path}: {n} pages, 0 bad checksums.\n"
    except dump.DumpError as e:
        raise CorruptDataError(str(e)) from None
    except OSError as e:
        raise CorruptDataError(f"{e.strerror}", where=path) from None
    sys.stdout.write(out)
