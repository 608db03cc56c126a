"""Provenance commands: ``genchain keys new|list|show`` and ``genchain verify``.

Each function calls the library and prints what it did; the docstrings are the ``--help`` text.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from genchain.errors import ConfigError


def cmd_keys_new(args: argparse.Namespace) -> None:
    """Make a signing identity: an Ed25519 key pair, plus a local root CA and a leaf certificate for C2PA.

    Private keys are written with mode 0600 under $GENCHAIN_HOME/keys/NAME (default ~/.genchain). Hand out
    c2pa/ca.pem: with it as a trust anchor, any C2PA validator reports your files as Trusted. --allow and
    --constrain set the CAWG training-and-mining choices written into every C2PA manifest you sign (entries:
    ai_inference, ai_generative_training, ai_training, data_mining; those not named are notAllowed).

    examples:
      genchain keys new
      genchain keys new --name studio --allow ai_inference --constrain data_mining
      genchain keys new --name studio --c2pa-only --overwrite    # new CA and leaf for an existing key
    """
    from genchain.provenance.certs import create_c2pa_credentials, training_mining
    from genchain.provenance.keys import create_identity, load_identity

    choices = {**{entry: "allowed" for entry in args.allow}, **{entry: "constrained" for entry in args.constrain}}
    if set(args.allow) & set(args.constrain):
        raise ConfigError(f"{', '.join(sorted(set(args.allow) & set(args.constrain)))}: both --allow and --constrain")
    identity = load_identity(args.name) if args.c2pa_only else create_identity(args.name)
    credentials = create_c2pa_credentials(identity, overwrite=args.overwrite, training_mining=choices)
    print(f"identity {identity.name}: key id {identity.key_id}")
    print(f"  public key (Ed25519) {identity.public_hex}")
    print(f"  keys in {identity.directory} (private keys mode 0600)")
    print(f"  C2PA trust anchor to hand out: {credentials.ca_path}")
    uses = ", ".join(f"{name.removeprefix('cawg.')} {entry['use']}"
                     for name, entry in training_mining(identity).items())
    print(f"  training and mining: {uses}")


def cmd_keys_list(args: argparse.Namespace) -> None:
    """List the signing identities on this machine.

    examples:
      genchain keys list
    """
    from genchain.provenance.certs import C2PA_DIR, CA_CERT
    from genchain.provenance.keys import genchain_home, identity_dir, list_identities

    found = list_identities()
    if not found:
        print(f"no identities in {genchain_home() / 'keys'}; make one with `genchain keys new`")
    for entry in found:
        c2pa = "C2PA CA" if (identity_dir(entry["name"]) / C2PA_DIR / CA_CERT).is_file() else "no C2PA CA"
        print(f"{entry['name']:16s} {entry['key_id'][:16]}  {entry.get('created', '?')}  {c2pa}")


def cmd_keys_show(args: argparse.Namespace) -> None:
    """Show one identity: key id, public key, its C2PA certificates and training-and-mining choices.

    examples:
      genchain keys show
      genchain keys show studio --pem > studio.pub
    """
    from genchain.provenance.certs import load_c2pa_credentials, training_mining
    from genchain.provenance.keys import load_identity

    identity = load_identity(args.name)
    if args.pem:
        print(identity.public_pem(), end="")
        return
    print(f"identity   {identity.name}\nkey id     {identity.key_id}\npublic key {identity.public_hex}\n"
          f"folder     {identity.directory}")
    credentials = load_c2pa_credentials(identity)
    leaf = credentials.leaf
    print(f"C2PA CA    {credentials.ca_path}\nC2PA leaf  serial {leaf.serial_number}, valid "
          f"{leaf.not_valid_before_utc:%Y-%m-%d} to {leaf.not_valid_after_utc:%Y-%m-%d}, sha256 "
          f"{credentials.leaf_sha256}")
    for name, entry in training_mining(identity).items():
        print(f"  {name:28s} {entry['use']}")


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify generated files: integrity, signature, ledger inclusion, C2PA and watermark, each reported apart.

    Exit status 0 when no check failed, 1 when one did (2 for unusable input). By default the sidecar is
    FILE.manifest.json, the ledger $GENCHAIN_HOME/ledger.db, and C2PA is validated against the signer's local
    CA when that identity is on this machine; --trust-anchor names the root certificate to trust instead.

    examples:
      genchain verify out/seed0_0000.png
      genchain verify samples.jsonl --run runs/sh --json
      genchain verify photo.jpg --manifest photo.jpg.manifest.json --trust-anchor studio-ca.pem
      genchain verify out/*.png --ledger postgresql://ledger@db/genchain
    """
    from genchain.provenance.verify import verify_artefact

    if args.manifest and len(args.files) > 1:
        raise ConfigError("--manifest names the sidecar of one file; pass one FILE with it")
    reports = [verify_artefact(path, manifest=args.manifest, ledger=args.ledger, trust_anchor=args.trust_anchor,
                               run_dir=args.run) for path in args.files]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports] if len(reports) > 1 else reports[0].to_dict(), indent=2,
                         ensure_ascii=False))
    else:
        print("\n\n".join(r.render() for r in reports))
    return 0 if all(r.ok for r in reports) else 1


def add_provenance_commands(groups: argparse._SubParsersAction, command: Callable) -> None:
    keys = groups.add_parser("keys", help="signing identities").add_subparsers(dest="cmd", metavar="ACTION",
                                                                               required=True)
    p = command(keys, "new", cmd_keys_new, "make a signing identity and its C2PA certificates")
    p.add_argument("--name", default="default", help="identity name (default: default)")
    p.add_argument("--allow", action="append", default=[], metavar="ENTRY",
                   help="CAWG training-and-mining entry to allow (repeatable)")
    p.add_argument("--constrain", action="append", default=[], metavar="ENTRY",
                   help="CAWG training-and-mining entry allowed with constraints (repeatable)")
    p.add_argument("--c2pa-only", action="store_true", help="only (re)make the C2PA CA and leaf of an existing key")
    p.add_argument("--overwrite", action="store_true", help="with --c2pa-only: replace the existing CA and leaf")
    command(keys, "list", cmd_keys_list, "list identities")
    p = command(keys, "show", cmd_keys_show, "show an identity")
    p.add_argument("name", nargs="?", default="default")
    p.add_argument("--pem", action="store_true", help="print only the public key as PEM")

    p = command(groups, "verify", cmd_verify, "verify generated files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--manifest", metavar="FILE.manifest.json", help="the sidecar (default: FILE.manifest.json)")
    p.add_argument("--ledger", metavar="URL", help="ledger path or URL (default: $GENCHAIN_HOME/ledger.db)")
    p.add_argument("--trust-anchor", metavar="CA.pem", help="root certificate to validate C2PA against")
    p.add_argument("--run", metavar="RUN_DIR", help="where the run that made a text file is now (tokenizer)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
