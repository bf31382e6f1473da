"""``metai-audit``: check a study's lineage against the chain, as an auditor or a patient would.

    metai-audit verify --rpc-url URL --manifest deployment.json --study N --bundle DIR [--json FILE]

Prints the report for people on stdout (and the JSON report to ``--json``, ``-`` for stdout
instead of the text). Exit status: 0 every check passed, 1 at least one finding, 2 the audit
could not run (bad arguments, unreadable manifest or artifacts, an endpoint that cannot be
reached or serves another chain).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audit.artifacts import DEFAULT_ARTIFACTS, read_artifacts
from audit.errors import AuditError
from audit.manifest import check_bytecode, read_manifest
from audit.rpc import connect
from audit.verify import verify_study

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metai-audit", description="Independent audit of MeTAI studies.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="re-derive a study's lineage and check it against the chain")
    verify.add_argument("--rpc-url", required=True, help="the chain's JSON-RPC endpoint, e.g. http://127.0.0.1:8545")
    verify.add_argument("--manifest", required=True, type=Path, help="the deployment manifest (deployment.json)")
    verify.add_argument("--study", required=True, type=int, help="the study id")
    verify.add_argument("--bundle", required=True, type=Path, help="the study's lineage bundle (a directory)")
    verify.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS,
                        help=f"the contracts' ABI artifacts (default: {DEFAULT_ARTIFACTS})")
    verify.add_argument("--json", dest="json_out", help="also write the JSON report to this file ('-': stdout only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        deployment = read_manifest(args.manifest)
        artifacts = read_artifacts(args.artifacts)
        check_bytecode(deployment, artifacts)
        reader = connect(args.rpc_url, deployment)
        report = verify_study(reader, deployment, artifacts, args.study, args.bundle)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json_out == "-":
        print(report.to_json())
    else:
        print(report.text())
        if args.json_out:
            Path(args.json_out).write_text(report.to_json() + "\n", encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
