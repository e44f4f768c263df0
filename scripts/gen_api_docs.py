"""Write docs/api.md from the comments in proto/ (`make api-docs`; `--check` in tests).

The protos are compiled with grpc_tools.protoc into a FileDescriptorSet that
keeps source info (`--include_source_info`), and the reference is built from
the descriptors and their leading comments: services and methods, messages and
fields, enums and values, in the order the files declare them. Nothing is
parsed with regular expressions. With --check, nothing is written: the command
fails if docs/api.md differs from what the protos produce now.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = Path("docs/api.md")

# Field numbers in descriptor.proto, as used in SourceCodeInfo.Location.path.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}


def descriptor_set(proto_root: Path) -> descriptor_pb2.FileDescriptorSet:
    """Compile every .proto under `proto_root`, keeping comments."""
    import grpc_tools  # type: ignore[import-untyped]

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "descriptors.pb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{proto_root}",
                f"-I{well_known}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *protos,
            ],
            check=True,
        )
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _File:
    """One .proto file's descriptors with its comments by path."""

    def __init__(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        self.proto = proto
        self.comments = {
            tuple(loc.path): loc.leading_comments.strip("\n")
            for loc in proto.source_code_info.location
            if loc.leading_comments
        }

    def comment(self, path: Sequence[int]) -> str:
        text = self.comments.get(tuple(path), "")
        # protoc keeps the space after `//`; drop it from every line.
        return "\n".join(line[1:] if line.startswith(" ") else line for line in text.split("\n"))


def _anchor(full_name: str) -> str:
    return full_name.lstrip(".")


def _paragraphs(text: str) -> str:
    """A comment as Markdown paragraphs (blank lines kept)."""
    return text.strip()


def _cell(text: str) -> str:
    """A comment in one table cell: lines joined, paragraphs split by <br>."""
    paras = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "<br>".join(p for p in paras if p).replace("|", "\\|")


class _Writer:
    def __init__(self, files: list[_File], package_names: set[str]) -> None:
        self.files = files
        self.local = package_names
        self.map_entries: dict[str, descriptor_pb2.DescriptorProto] = {}
        for f in files:
            for name, msg, _ in self._messages(f.proto.message_type, "." + f.proto.package, []):
                if msg.options.map_entry:
                    self.map_entries[name] = msg
        self.lines: list[str] = []

    @staticmethod
    def _messages(
        messages: Sequence[descriptor_pb2.DescriptorProto], scope: str, path: list[int]
    ) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto, list[int]]]:
        base = [*path, _MSG_NESTED] if path else [_FILE_MESSAGE]
        for i, msg in enumerate(messages):
            name = f"{scope}.{msg.name}"
            here = [*base, i]
            yield name, msg, here
            yield from _Writer._messages(msg.nested_type, name, here)

    def _type_ref(self, type_name: str) -> str:
        name = type_name.lstrip(".")
        if type_name in self.local:
            short = name.rsplit(".", 1)[-1] if "." in name else name
            return f"[`{short}`](#{_anchor(type_name)})"
        return f"`{name}`"

    def _field_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.type_name in self.map_entries:
            entry = self.map_entries[field.type_name]
            key, value = entry.field[0], entry.field[1]
            return f"map<{self._field_type(key)}, {self._field_type(value)}>"
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            kind = self._type_ref(field.type_name)
        else:
            kind = f"`{_SCALARS[field.type]}`"
        if field.label == FDP.LABEL_REPEATED:
            return f"repeated {kind}"
        if field.proto3_optional:
            return f"optional {kind}"
        return kind

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def write_file(self, f: _File) -> None:
        proto = f.proto
        self.emit(f"## `{proto.name}`", "")
        for i, service in enumerate(proto.service):
            self._service(f, service, [_FILE_SERVICE, i])
        for name, msg, path in self._messages(proto.message_type, "." + proto.package, []):
            if not msg.options.map_entry:
                self._message(f, name, msg, path)
        for i, enum in enumerate(proto.enum_type):
            self._enum(f, f".{proto.package}.{enum.name}", enum, [_FILE_ENUM, i])
        for name, msg, path in self._messages(proto.message_type, "." + proto.package, []):
            for j, enum in enumerate(msg.enum_type):
                self._enum(f, f"{name}.{enum.name}", enum, [*path, _MSG_ENUM, j])

    def _heading(self, kind: str, full_name: str) -> None:
        short = full_name.lstrip(".").removeprefix(self.package + ".")
        self.emit(f'<a id="{_anchor(full_name)}"></a>', "", f"### {kind} `{short}`", "")

    def _service(
        self, f: _File, service: descriptor_pb2.ServiceDescriptorProto, path: list[int]
    ) -> None:
        full = f".{f.proto.package}.{service.name}"
        self._heading("Service", full)
        self.emit(_paragraphs(f.comment(path)), "")
        for i, method in enumerate(service.method):
            req = ("stream " if method.client_streaming else "") + self._type_ref(method.input_type)
            resp = ("stream " if method.server_streaming else "") + self._type_ref(
                method.output_type
            )
            self.emit(
                f'<a id="{_anchor(full)}.{method.name}"></a>',
                "",
                f"#### `{method.name}`",
                "",
                f"{req} → {resp}",
                "",
                _paragraphs(f.comment([*path, _SERVICE_METHOD, i])),
                "",
            )

    def _message(
        self, f: _File, full: str, msg: descriptor_pb2.DescriptorProto, path: list[int]
    ) -> None:
        self._heading("Message", full)
        self.emit(_paragraphs(f.comment(path)), "")
        if not msg.field:
            self.emit("No fields.", "")
            return
        oneofs = {
            i: o.name
            for i, o in enumerate(msg.oneof_decl)
            # proto3 `optional` makes a synthetic oneof; it is shown as `optional`.
            if not any(fd.proto3_optional and fd.oneof_index == i for fd in msg.field)
        }
        self.emit("| Field | Number | Type | Description |", "|---|---|---|---|")
        for i, fd in enumerate(msg.field):
            description = _cell(f.comment([*path, _MSG_FIELD, i]))
            if fd.HasField("oneof_index") and fd.oneof_index in oneofs:
                group = f"In oneof `{oneofs[fd.oneof_index]}`."
                description = f"{group} {description}" if description else group
            self.emit(f"| `{fd.name}` | {fd.number} | {self._field_type(fd)} | {description} |")
        self.emit("")
        for index, name in oneofs.items():
            comment = " ".join(f.comment([*path, _MSG_ONEOF, index]).split())
            self.emit(f"Oneof `{name}`: {comment}" if comment else f"Oneof `{name}`.", "")

    def _enum(
        self, f: _File, full: str, enum: descriptor_pb2.EnumDescriptorProto, path: list[int]
    ) -> None:
        self._heading("Enum", full)
        self.emit(_paragraphs(f.comment(path)), "")
        self.emit("| Value | Number | Description |", "|---|---|---|")
        for i, value in enumerate(enum.value):
            self.emit(
                f"| `{value.name}` | {value.number} | {_cell(f.comment([*path, _ENUM_VALUE, i]))} |"
            )
        self.emit("")

    @property
    def package(self) -> str:
        return self.files[0].proto.package


def render(fds: descriptor_pb2.FileDescriptorSet, proto_root: Path) -> str:
    """The whole api.md for the files under `proto_root` (imports excluded)."""
    own = {str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto")}
    by_name = {p.name: p for p in fds.file if p.name in own}
    ordered: list[str] = []

    def visit(name: str) -> None:
        # Files a file imports come before it: the core types lead.
        if name in ordered or name not in by_name:
            return
        for dep in sorted(by_name[name].dependency):
            visit(dep)
        ordered.append(name)

    for name in sorted(by_name):
        visit(name)
    files = [_File(by_name[name]) for name in ordered]
    local: set[str] = set()
    for f in files:
        pkg = "." + f.proto.package
        for name, msg, _ in _Writer._messages(f.proto.message_type, pkg, []):
            local.add(name)
            local.update(f"{name}.{e.name}" for e in msg.enum_type)
        local.update(f"{pkg}.{e.name}" for e in f.proto.enum_type)
    w = _Writer(files, local)
    packages = sorted({f.proto.package for f in files})
    w.emit(
        "# API reference",
        "",
        "<!-- Generated from proto/ by scripts/gen_api_docs.py. Do not edit: run "
        "`make api-docs`. -->",
        "",
        f"Package {', '.join(f'`{p}`' for p in packages)}. Every error carries a "
        "`google.rpc.ErrorInfo` with a stable `reason` (see "
        "[troubleshooting.md](troubleshooting.md)); argument errors also carry a "
        "`google.rpc.BadRequest` naming the field. The gateway also serves "
        "`grpc.health.v1.Health` and server reflection.",
        "",
        "Contents:",
        "",
    )
    for f in files:
        entries = [f"[{s.name}](#{f.proto.package}.{s.name})" for s in f.proto.service]
        w.emit(f"- `{f.proto.name}`: " + (", ".join(entries) if entries else "types only"))
    w.emit("")
    for f in files:
        w.write_file(f)
    text = "\n".join(w.lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args()
    root: Path = args.root.resolve()
    proto_root = root / "proto"
    text = render(descriptor_set(proto_root), proto_root)
    path = root / OUTPUT
    current = path.read_text() if path.exists() else ""
    if args.check:
        if current != text:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), str(OUTPUT), "regenerated"
                )
            )
            print(f"{OUTPUT} is stale; run `make api-docs`")
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
