"""``audiocl speakers``: list, remove or rename enrolled speakers."""

from . import _common

HELP = "list, remove or rename enrolled speakers"
DESCRIPTION = """Manage the speaker store:
  audiocl speakers list                 every enrolled speaker (name, files, model, last change)
  audiocl speakers remove NAME
  audiocl speakers rename OLD NEW
No model is needed. An unknown speaker is an error (exit code 5).
"""


def add_arguments(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list enrolled speakers")
    rm = sub.add_parser("remove", help="remove a speaker")
    rm.add_argument("name", help="the enrolled speaker to remove")
    mv = sub.add_parser("rename", help="rename a speaker")
    mv.add_argument("old", help="the enrolled speaker's current name")
    mv.add_argument("new", help="the new name (must not be taken)")
    for q in (ls, rm, mv):
        _common.add_db(q)
        _common.add_json(q)


def run(args) -> int:
    from ...inference.store import SpeakerStore

    path = _common.db_path(args)
    if args.action == "list" and not path.exists():
        records = []  # do not create a store just to list it
    else:
        store = SpeakerStore(path)
    if args.action == "list":
        if path.exists():
            records = store.list()
        if args.json:
            _common.print_json({"db": str(path), "speakers": [r.to_dict() for r in records]})
        elif not records:
            print(f"no speakers enrolled ({path})")
        else:
            width = max(len("name"), *(len(r.name) for r in records))
            print(f"{'name':<{width}}  {'files':>5}  {'model':<16}  updated")
            for r in records:
                print(f"{r.name:<{width}}  {r.count:>5}  {r.model_id:<16}  {r.updated}")
            print(f"{len(records)} speaker(s) in {path}")
        return 0
    if args.action == "remove":
        record = store.remove(args.name)
        result = {"action": "removed", "speaker": record.to_dict(), "db": str(path)}
        text = f"removed {record.name!r} ({path})"
    else:
        record = store.rename(args.old, args.new)
        result = {
            "action": "renamed",
            "old": args.old,
            "speaker": record.to_dict(),
            "db": str(path),
        }
        text = f"renamed {args.old!r} to {record.name!r} ({path})"
    if args.json:
        _common.print_json(result)
    else:
        print(text)
    return 0
