/**
 * Enums of the client API as their names: `AudioFormat.SLIN === "SLIN"`, so an
 * event or a config prints as `{ state: "PAUSE" }`, not `{ state: 1 }`. Each is
 * made from the generated protobuf enum of the same name (the same members),
 * and converted to and from its wire numbers at the edge of the client.
 * @internal
 */

/** Wire enum objects as protoc-gen-es makes them: name → number, and number → name. */
type WireEnum = Record<string, string | number>;

/** The client-side enum of a wire enum: each member's value is its own name. */
type Names<E> = { readonly [K in keyof E]: K };

/** The client-side enum of `wire`: its names, each mapped to itself. */
export function names<E extends WireEnum>(wire: E): Names<E> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(wire)) {
    if (typeof value === "number") {
      out[name] = name;
    }
  }
  return Object.freeze(out) as Names<E>;
}

/** The wire number of a name (undefined stays undefined: the field is not sent). */
export function toWire<E extends WireEnum>(wire: E, name: keyof E | undefined): number | undefined {
  if (name === undefined) {
    return undefined;
  }
  const n = wire[name];
  if (typeof n !== "number") {
    throw new TypeError(`mediastream: ${String(name)} is not a value of this enum`);
  }
  return n;
}

/** The name of a wire number; a number this client does not know is UNSPECIFIED. */
export function fromWire<E extends WireEnum>(wire: E, n: number): keyof E & string {
  const name = (wire as Record<number, string | number>)[n];
  return (typeof name === "string" ? name : "UNSPECIFIED") as keyof E & string;
}
