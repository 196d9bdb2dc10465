#!/usr/bin/env python3
"""Check a callguard evidence bundle without callguard: python3 verify_bundle.py BUNDLE.zip LEDGER.pub
Written from docs/evidence-bundle.md alone; needs only the `cryptography` package. Exit 0 = verified."""
import base64, hashlib, json, sys, zipfile
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

def H(b): return hashlib.sha256(b).digest()

def open_checkpoint(note, vkey):                    # C2SP signed note + tlog-checkpoint
    name, kid, key = vkey.strip().split("+", 2)
    raw = base64.b64decode(key)
    assert raw[0] == 1 and H(name.encode() + b"\n" + raw)[:4].hex() == kid, "bad verifier key"
    text, sigs = note[:note.rindex("\n\n") + 1], note[note.rindex("\n\n") + 2:].splitlines()
    for line in sigs:
        dash, signer, blob = line.split(" ")
        blob = base64.b64decode(blob)
        if signer == name and blob[:4].hex() == kid:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text.encode())  # raises if forged
            origin, size, root = text.split("\n")[:3]
            return origin, int(size), base64.b64decode(root)
    raise ValueError("checkpoint not signed by the given key")

def root_from_proof(index, size, leaf, proof):     # RFC 9162 section 2.1.3.2
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        assert sn > 0, "proof too long"
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            while fn and not fn & 1: fn, sn = fn >> 1, sn >> 1
        else:
            r = H(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short"
    return r

def main(bundle, keyfile):
    z = zipfile.ZipFile(bundle)
    manifest, vkey = json.loads(z.read("manifest.json")), open(keyfile).read()
    assert manifest["format"] == "callguard-evidence-bundle/1", "unknown format"
    heads = {}
    for chain, info in manifest["chains"].items():
        origin, size, root = open_checkpoint(z.read(info["checkpoint"]).decode(), vkey)
        assert origin.endswith("/" + chain), f"checkpoint of another log: {origin}"
        heads[chain] = (size, root)
    entries = [json.loads(l) for l in z.read(manifest["entries"]).decode().splitlines() if l.strip()]
    for e in entries:
        where = f"{e['chain_id']} seq {e['seq']}"
        doc = {k: e[k] for k in ("chain_id", "seq", "call_id", "kind", "pbx_time_us", "received_at_us",
                                 "data", "prev_hash")}
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                           allow_nan=False).encode()).hexdigest()
        assert digest == e["hash"], f"{where}: content does not match its hash"
        assert e["call_id"] == manifest["call_id"] and e["leaf_index"] == e["seq"] - 1, f"{where}: misplaced"
        size, root = heads[e["chain_id"]]
        proof = [base64.b64decode(p) for p in e["inclusion_proof"]]
        leaf = H(b"\x00" + bytes.fromhex(digest))
        assert root_from_proof(e["leaf_index"], size, leaf, proof) == root, f"{where}: not in the signed log"
    for r in manifest.get("recordings", []):
        if r.get("file"):
            assert hashlib.sha256(z.read(r["file"])).hexdigest() == r["sha256"], f"{r['file']}: altered"
    print(f"VERIFIED: {len(entries)} entries of call {manifest['call_id']} are in the signed log")

if __name__ == "__main__":
    try:
        main(*sys.argv[1:3])
    except Exception as exc:  # any failed check
        sys.exit(f"NOT VERIFIED: {exc}")
