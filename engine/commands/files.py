"""`homestream put|get|rm|ls`: the storage API (SPEC 2) from the shell, one module for the four subcommands.

A key is `/pub/...` (the user of --key / HOMESTREAM_KEY), `<user>/pub/...` or `pubky://<user>/pub/...`.
Invariants: stdout carries only the data asked for (the value for get, URIs for ls, one result line for put/rm);
every failure is one line on stderr: exit 2 for a bad argument, 1 for an unreachable server or a server error.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys

from ..client.cli_common import UsageError, add_client_options, make_client, report

KEY_FORMS = """
A key is /pub/... (the user of --key or HOMESTREAM_KEY), <user>/pub/..., or pubky://<user>/pub/...;
paths outside /pub/ are private: only the owner's key can read them.
"""

PUT_EXAMPLES = KEY_FORMS + """
examples:
  echo '{"hello":"world"}' | homestream put /pub/app/post.json
  homestream put /pub/photos/cat.jpg cat.jpg                 # content type guessed: image/jpeg
  homestream put /priv/notes.txt notes.txt --content-type 'text/plain; charset=utf-8'
  homestream put pubky://<user>/pub/a.json a.json --key alice.key --url http://127.0.0.1:6286
"""

GET_EXAMPLES = KEY_FORMS + """
examples:
  homestream get /pub/app/post.json
  homestream get pubky://<user>/pub/photos/cat.jpg -o cat.jpg
  homestream get /priv/notes.txt --key alice.key             # private: signed with the owner's key
"""

RM_EXAMPLES = KEY_FORMS + """
examples:
  homestream rm /pub/app/post.json
  homestream rm pubky://<user>/pub/app/post.json --key alice.key
"""

LS_EXAMPLES = KEY_FORMS + """
Lists the direct and nested entries as pubky:// URIs, one per line, in order. Without --limit every page is
fetched; with --limit one page is printed and, when more may follow, the cursor for the next page on stderr.

examples:
  homestream ls /pub/app/
  homestream ls <user>/pub/ --limit 10
  homestream ls /pub/app/ --limit 10 --cursor pubky://<user>/pub/app/post.json
  homestream ls /pub/app/ --reverse --limit 1                # the last entry
"""


def _parser_setup(parser: argparse.ArgumentParser, epilog: str) -> None:
    parser.epilog = epilog


def configure_put(parser: argparse.ArgumentParser) -> None:
    _parser_setup(parser, PUT_EXAMPLES)
    parser.add_argument("key_ref", metavar="KEY", help="where to store: /pub/..., <user>/pub/... or pubky://...")
    parser.add_argument("file", metavar="FILE", nargs="?", default=None,
                        help="file to store; - or nothing for stdin")
    parser.add_argument("--content-type", "-t", metavar="TYPE", default=None,
                        help="Content-Type to store (default: guessed from the key's or the file's extension)")
    add_client_options(parser, "key file to sign with (default: $HOMESTREAM_KEY); the key's user owns the path")


def run_put(args: argparse.Namespace) -> int:
    def body() -> int:
        with make_client(args, need_key=True) as client:
            user, path = client.resolve(args.key_ref)  # check the key and the name before reading input
            if args.file in (None, "-"):
                if args.file is None and sys.stdin.isatty():
                    raise UsageError("nothing to store: give a FILE, or pipe the value on stdin (- reads stdin)")
                data = sys.stdin.buffer.read()
                source = None
            else:
                try:
                    with open(args.file, "rb") as fh:
                        data = fh.read()
                except OSError as exc:
                    raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
                source = args.file
            ctype = args.content_type or mimetypes.guess_type(path, strict=False)[0]
            if ctype is None and source is not None:
                ctype = mimetypes.guess_type(source, strict=False)[0]
            result = client.put(args.key_ref, data, ctype, guess_type=False)
        verb = "created" if result.created else "updated"
        print(f"{verb} {result.uri} {len(data)} bytes etag={result.etag} event={result.event_id}")
        return 0

    return report("put", body)


def configure_get(parser: argparse.ArgumentParser) -> None:
    _parser_setup(parser, GET_EXAMPLES)
    parser.add_argument("key_ref", metavar="KEY", help="what to read: /pub/..., <user>/pub/... or pubky://...")
    parser.add_argument("--output", "-o", metavar="FILE", default=None, help="write the value here, not to stdout")
    add_client_options(parser, "key file (default: $HOMESTREAM_KEY): for bare /paths, and to read private ones")


def run_get(args: argparse.Namespace) -> int:
    def body() -> int:
        with make_client(args) as client:
            blob = client.get(args.key_ref)
        if args.output:
            tmp = f"{args.output}.part"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(blob.data)
                os.replace(tmp, args.output)
            except OSError as exc:
                raise UsageError(f"{args.output}: {exc.strerror or exc}") from None
            print(f"wrote {args.output}: {len(blob.data)} bytes, {blob.content_type}, etag={blob.etag}",
                  file=sys.stderr)
        else:
            _write_stdout(blob.data)
        return 0

    return report("get", body)


def configure_rm(parser: argparse.ArgumentParser) -> None:
    _parser_setup(parser, RM_EXAMPLES)
    parser.add_argument("key_ref", metavar="KEY", help="what to delete: /pub/..., <user>/pub/... or pubky://...")
    add_client_options(parser, "key file to sign with (default: $HOMESTREAM_KEY)")


def run_rm(args: argparse.Namespace) -> int:
    def body() -> int:
        with make_client(args, need_key=True) as client:
            result = client.delete(args.key_ref)
        print(f"deleted {result.uri} event={result.event_id}")
        return 0

    return report("rm", body)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def configure_ls(parser: argparse.ArgumentParser) -> None:
    _parser_setup(parser, LS_EXAMPLES)
    parser.add_argument("dir", metavar="DIR", help="directory: /pub/app/, <user>/pub/ or pubky://<user>/pub/")
    parser.add_argument("--limit", type=_positive, default=None, metavar="N",
                        help="print one page of at most N entries (the server caps a page at 1000)")
    parser.add_argument("--cursor", default=None, metavar="ENTRY",
                        help="start strictly after this entry (its pubky:// URI or its path)")
    parser.add_argument("--reverse", action="store_true", help="reverse lexicographic order")
    add_client_options(parser, "key file (default: $HOMESTREAM_KEY): for bare /paths, and to list private ones")


def run_ls(args: argparse.Namespace) -> int:
    def body() -> int:
        with make_client(args) as client:
            if args.limit is not None:
                page = client.list(args.dir, cursor=args.cursor, limit=args.limit, reverse=args.reverse)
                _write_stdout("".join(e + "\n" for e in page.entries).encode("utf-8"))
                if page.next_cursor:
                    print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
            else:
                for entry in client.iter_list(args.dir, cursor=args.cursor, reverse=args.reverse):
                    _write_stdout((entry + "\n").encode("utf-8"))
        return 0

    return report("ls", body)


def _write_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # the reader went away (| head): not an error; keep Python quiet at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
