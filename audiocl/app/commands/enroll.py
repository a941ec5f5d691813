"""``audiocl enroll``: add a speaker (or more recordings of one) to the speaker store."""

from . import _common

HELP = "enroll a speaker from one or more recordings into the speaker store"
DESCRIPTION = """Enroll a speaker: each file is embedded, and the speaker's embedding is the
normalised mean of all their enrolment embeddings. Enrolling a name that exists adds the new
recordings to it (default) or, with --replace, starts that speaker over from these files.

The store remembers which model made the embeddings: a store holding speakers of another
model refuses to mix them in (exit code 5); use that model, another --db, or re-enroll.
"""


def add_arguments(p):
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings of the speaker")
    p.add_argument("--name", required=True, help="speaker name")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the speaker's enrolment with these files (default: add to it)",
    )
    _common.add_db(p)
    _common.add_model(p)
    _common.add_json(p)


def run(args) -> int:
    model = _common.load_model(args)
    speakers = model.store(_common.db_path(args))
    existed = args.name in speakers
    record = speakers.enroll(args.name, args.files, mode="replace" if args.replace else "add")
    action = "replaced" if existed and args.replace else ("added to" if existed else "enrolled")
    if args.json:
        _common.print_json(
            {
                "action": action,
                "speaker": record.to_dict(),
                "files_added": len(args.files),
                "db": str(speakers.path),
                "model": _common.model_info(model),
            }
        )
    else:
        print(_common.model_line(model))
        print(
            f"{action} {record.name!r}: {len(args.files)} file(s) now, {record.count} enrolment "
            f"file(s) in all (store: {speakers.path})"
        )
    return 0
