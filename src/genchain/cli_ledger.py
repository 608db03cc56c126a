"""``genchain ledger ...``: the transparency log (entries, proofs, audit) and copyright registrations.

Each function opens the ledger, calls one library entry point and prints what it did; the docstrings are the
``--help`` text. Every command takes ``--ledger`` (a path, ``sqlite:///PATH`` or ``postgresql://...``; default
``$GENCHAIN_HOME/ledger.db``) and ``--key`` (the operator identity that signs tree heads).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from genchain.errors import InputError


def cmd_log(args: argparse.Namespace) -> None:
    """List the latest entries of the ledger, oldest first.

    examples:
      genchain ledger log
      genchain ledger log --limit 100 --ledger postgresql://me@db/ledger
    """
    with _open(args) as ledger:
        size = ledger.size()
        for entry in ledger.entries(max(0, size - args.limit)):
            print(f"{entry.index:>8}  {_time(entry.timestamp)}  {entry.kind:<9} {_summary(entry.body, entry.kind)}")
        print(f"{size} entries; root {ledger.root_hash().hex()}")


def cmd_show(args: argparse.Namespace) -> None:
    """Print one entry as JSON: its kind, time, body and leaf hash.

    examples:
      genchain ledger show 0
    """
    with _open(args) as ledger:
        entry = ledger.entry(args.index)
    print(json.dumps({"index": entry.index, "kind": entry.kind, "timestamp": entry.timestamp,
                      "time": _time(entry.timestamp), "leaf_hash": entry.leaf_hash.hex(), "body": entry.body},
                     indent=2, ensure_ascii=False))


def cmd_prove(args: argparse.Namespace) -> None:
    """Prove that entry N is in the log: its audit path to a signed tree head.

    With --json the proof is a self-contained file that anyone can check with only the operator's public key
    (`genchain ledger verify-proof`, or by hand: the file's "how" field lists the steps).

    examples:
      genchain ledger prove 12
      genchain ledger prove 12 --size 100 --json > entry12.proof.json
    """
    from genchain.provenance.ledger_proofs import inclusion_document

    with _open(args) as ledger:
        document = inclusion_document(ledger, args.index, args.size)
    _print_proof(document, args.json, "tree_head", "audit path")


def cmd_consistency(args: argparse.Namespace) -> None:
    """Prove that the log of OLD_SIZE entries is a prefix of the current log (or of --new-size entries).

    examples:
      genchain ledger consistency 100
      genchain ledger consistency 100 --new-size 250 --json > grow.proof.json
    """
    from genchain.provenance.ledger_proofs import consistency_document

    with _open(args) as ledger:
        document = consistency_document(ledger, args.old_size, args.new_size)
    _print_proof(document, args.json, "new_tree_head", "proof")


def _print_proof(document: dict, as_json: bool, head: str, title: str) -> None:
    """A proof document as JSON, or checked with the key of its own tree head (``head``) and listed."""
    from genchain.provenance.ledger_proofs import verify_document

    if as_json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return
    print(verify_document(document, document[head]["public_key"]))
    print(f"{title} ({len(document['proof'])} hashes):")
    for h in document["proof"]:
        print(f"  {h}")


def cmd_verify_proof(args: argparse.Namespace) -> None:
    """Check a proof file from `prove --json` or `consistency --json` offline, with only the operator's key.

    examples:
      genchain ledger verify-proof entry12.proof.json --public-key 3b6a27bc...   # 64 hex digits, or a .pub file
    """
    from genchain.provenance.ledger_proofs import verify_document

    path = Path(args.proof)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read proof file {path}: {err}") from None
    key = Path(args.public_key).read_text() if Path(args.public_key).is_file() else args.public_key
    print("verified: " + verify_document(document, key))


def cmd_audit(args: argparse.Namespace) -> None:
    """Recompute the whole tree from the stored entries and check every node and signed tree head.

    Reports each damaged, deleted or forged row; exits with status 2 when anything is wrong.

    examples:
      genchain ledger audit
      genchain ledger audit --public-key 3b6a27bc... --json
    """
    from genchain.errors import ProvenanceError
    from genchain.provenance.ledger_audit import report_json

    with _open(args) as ledger:
        report = ledger.audit(public_key=args.public_key, progress=True)
    if args.json:
        print(report_json(report))
    else:
        for problem in report.problems:
            print(f"PROBLEM {problem}")
        print(report.summary())
    if not report.ok:
        raise ProvenanceError(f"the ledger failed its audit: {report.problems_total} problem(s)")


def cmd_sth(args: argparse.Namespace) -> None:
    """Print a signed tree head (size, root, time, signature) for the whole log or its first --size entries.

    Keep the heads you see: a later `consistency` proof against them shows the log was only appended to.

    examples:
      genchain ledger sth > head.json
      genchain ledger sth --size 100
    """
    with _open(args) as ledger:
        print(json.dumps(ledger.signed_tree_head(args.size).to_json(), indent=2))


def cmd_register(args: argparse.Namespace) -> None:
    """Register your copyright in a file: its SHA-256, title, owner and licence, signed by the owner's key.

    A work is registered once; the owner can later transfer it (`genchain ledger transfer`).

    examples:
      genchain ledger register poem.txt --owner alice --license CC-BY-4.0 --title "Spring"
      genchain ledger register cover.png --owner studio --license LicenseRef-AllRightsReserved
    """
    from genchain.fileio import sha256_file
    from genchain.provenance.keys import load_identity

    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the work to register")
    owner = load_identity(args.owner)
    with _open(args) as ledger:
        entry = ledger.register(sha256_file(path), owner, args.license, args.title or path.name)
    print(f"registered {path} as entry {entry.index}: owner {owner.name} ({owner.key_id[:16]}...), licence "
          f"{args.license}, sha256 {entry.body['sha256']}")


def cmd_transfer(args: argparse.Namespace) -> None:
    """Transfer a registered work (entry ID) to another owner; only the current owner's key can sign it.

    --to names a local identity (its public key is enough) or, with --to-key, anyone. --as is the current
    owner's local identity (default: whichever local identity holds the owner's key).

    examples:
      genchain ledger transfer 7 --to bob
      genchain ledger transfer 7 --to carol --to-key 5f0c...e1 --as alice
    """
    from genchain.errors import ProvenanceError
    from genchain.provenance.keys import Identity, list_identities, load_identity, public_key_from_text

    with _open(args) as ledger:
        owner = ledger.owner(args.registration)
        name = args.as_ or next((i["name"] for i in list_identities()
                                 if i.get("public_key") == owner["public_key"]), None)
        if name is None:
            raise ProvenanceError(f"registration {args.registration} belongs to {owner['name']!r}; no identity here "
                                  "holds their key, so it cannot be transferred from this machine")
        recipient = (Identity(args.to, public_key_from_text(args.to_key)) if args.to_key
                     else _public_identity(args.to))
        entry = ledger.transfer(args.registration, load_identity(name), recipient)
    print(f"transferred registration {args.registration} from {name} to {recipient.name} "
          f"({recipient.key_id[:16]}...): entry {entry.index}")


def cmd_history(args: argparse.Namespace) -> None:
    """Show who has owned a registered work (entry ID): the registration and every transfer.

    examples:
      genchain ledger history 7
    """
    with _open(args) as ledger:
        chain = ledger.history(args.registration)
    first = chain[0].body
    print(f"work {first['sha256']} \"{first['title']}\", licence {first['license']}")
    print(f"{chain[0].index:>8}  {_time(chain[0].timestamp)}  registered by {_party(first['owner'])}")
    for entry in chain[1:]:
        print(f"{entry.index:>8}  {_time(entry.timestamp)}  transferred {_party(entry.body['from'])} -> "
              f"{_party(entry.body['to'])}")
    print(f"current owner: {_party(chain[-1].body['to'] if len(chain) > 1 else first['owner'])}")


def _open(args: argparse.Namespace):
    from genchain.provenance.keys import load_identity
    from genchain.provenance.ledger import Ledger
    from genchain.provenance.ledger_store import default_location

    location = args.ledger or str(default_location())
    if args.func is not cmd_register and "://" not in location and not Path(location).exists():
        raise InputError(f"no ledger at {location}; check --ledger (entries are added by signing artefacts "
                         "or `genchain ledger register`)")
    return Ledger.open(location, load_identity(args.key) if args.key else None)


def _public_identity(name: str):
    from genchain.errors import ProvenanceError
    from genchain.provenance.keys import PUBLIC_KEY, Identity, identity_dir, public_key_from_text

    path = identity_dir(name) / PUBLIC_KEY
    if not path.is_file():
        raise ProvenanceError(f"no identity {name!r} here; pass their public key with --to-key HEX")
    return Identity(name, public_key_from_text(path.read_text()))


def _time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _party(party: dict) -> str:
    return f"{party['name']} ({party['key_id'][:16]}...)"


def _summary(body: dict, kind: str) -> str:
    if kind == "register":
        return f"{body['sha256'][:16]}... \"{body['title']}\" {body['license']} by {_party(body['owner'])}"
    if kind == "transfer":
        return f"registration {body['registration']}: {_party(body['from'])} -> {_party(body['to'])}"
    extras = " ".join(f"{k}={body[k]}" for k in ("media", "kind") if k in body)
    return f"{body['sha256'][:16]}... {extras} signer {str(body.get('signer', '?'))[:16]}"


def add_ledger_commands(groups: argparse._SubParsersAction, command: Callable) -> None:
    """Register ``genchain ledger <log|show|prove|consistency|verify-proof|audit|sth|register|transfer|history>``."""
    ledger = groups.add_parser("ledger", help="the transparency log: entries, proofs, audit, copyright")
    sub = ledger.add_subparsers(dest="cmd", metavar="ACTION", required=True)

    def add(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = command(sub, name, func, help_text)
        p.add_argument("--ledger", metavar="URL", help="path, sqlite:///PATH or postgresql://... "
                                                       "(default $GENCHAIN_HOME/ledger.db)")
        p.add_argument("--key", metavar="NAME", help="operator identity that signs tree heads (default: the local "
                                                     "identity holding the ledger's key; 'default' for a new ledger)")
        return p

    p = add("log", cmd_log, "list the latest entries")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="how many (default 20)")
    p = add("show", cmd_show, "print one entry")
    p.add_argument("index", type=int, metavar="N")
    p = add("prove", cmd_prove, "inclusion proof of an entry")
    p.add_argument("index", type=int, metavar="N")
    p.add_argument("--size", type=int, metavar="S", help="prove into the tree of the first S entries")
    p.add_argument("--json", action="store_true", help="print a proof file that verifies offline")
    p = add("consistency", cmd_consistency, "proof that the log only grew since OLD_SIZE")
    p.add_argument("old_size", type=int, metavar="OLD_SIZE")
    p.add_argument("--new-size", type=int, metavar="S", help="default: the whole log")
    p.add_argument("--json", action="store_true", help="print a proof file that verifies offline")
    p = add("verify-proof", cmd_verify_proof, "check a proof file offline with the operator's public key")
    p.add_argument("proof", metavar="PROOF.json")
    p.add_argument("--public-key", required=True, metavar="HEX", help="64 hex digits, or a PEM .pub file")
    p = add("audit", cmd_audit, "recompute the tree and report any tampering")
    p.add_argument("--public-key", metavar="HEX", help="the operator key you expect (hex or PEM)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = add("sth", cmd_sth, "print a signed tree head")
    p.add_argument("--size", type=int, metavar="S", help="for the first S entries (default: all)")
    p = add("register", cmd_register, "register copyright in a file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--owner", required=True, metavar="NAME", help="the owner's local identity (signs)")
    p.add_argument("--license", required=True, metavar="SPDX", help="SPDX licence id, e.g. CC-BY-4.0")
    p.add_argument("--title", metavar="T", help="default: the file name")
    p = add("transfer", cmd_transfer, "transfer a registered work to a new owner")
    p.add_argument("registration", type=int, metavar="ID")
    p.add_argument("--to", required=True, metavar="NAME", help="the new owner")
    p.add_argument("--to-key", metavar="HEX", help="the new owner's public key, when NAME is not a local identity")
    p.add_argument("--as", dest="as_", metavar="NAME", help="the current owner's local identity")
    p = add("history", cmd_history, "ownership history of a registered work")
    p.add_argument("registration", type=int, metavar="ID")
