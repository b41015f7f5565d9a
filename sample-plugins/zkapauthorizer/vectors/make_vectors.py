"""Records interop vectors for the ZKAP port from the original Python code.

Run with python-challenge-bypass-ristretto 2022.6.30 installed (the version
ZKAPAuthorizer 2022.8.21 uses):

    python3 make_vectors.py > passes.json

It plays the three parties of ZKAPAuthorizer 2022.8.21 with that library's own
calls: the issuer signs blinded tokens with a batch DLEQ proof, the client
unblinds them and turns them into passes exactly as
``RistrettoRedeemer.tokens_to_passes`` does (preimage, a space, the SHA-512 HMAC
signature of the operation message, both base64), bound to messages made as
``storage_common._message_maker`` makes them, and the server's check
(``_ValidationResult._is_invalid_pass``) is run on every pass recorded.
"""

import json
import sys
from base64 import b64encode

import challenge_bypass_ristretto as cbr

OPERATIONS = ["allocate_buckets", "add_lease", "slot_testv_and_readv_and_writev"]


def message(operation, storage_index):
    return "{} {}".format(operation, b64encode(storage_index).decode("ascii")).encode(
        "ascii"
    )


def text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


def is_invalid(signing_key, pass_bytes, msg):
    preimage, signature = pass_bytes.split(b" ")
    preimage = cbr.TokenPreimage.decode_base64(preimage)
    signature = cbr.VerificationSignature.decode_base64(signature)
    unblinded = signing_key.rederive_unblinded_token(preimage)
    return unblinded.derive_verification_key_sha512().invalid_sha512(signature, msg)


def main():
    signing_key = cbr.random_signing_key()
    public_key = cbr.PublicKey.from_signing_key(signing_key)
    tokens = [cbr.RandomToken.create() for _ in range(5)]
    blinded = [t.blind() for t in tokens]
    signed = [signing_key.sign(b) for b in blinded]
    proof = cbr.BatchDLEQProof.create(signing_key, blinded, signed)
    unblinded = proof.invalid_or_unblind(tokens, blinded, signed, public_key)
    storage_index = bytes(range(16))
    passes = {}
    for operation in OPERATIONS:
        msg = message(operation, storage_index)
        made = []
        for token in unblinded:
            signature = token.derive_verification_key_sha512().sign_sha512(msg)
            made.append(
                token.preimage().encode_base64() + b" " + signature.encode_base64()
            )
        assert not any(is_invalid(signing_key, p, msg) for p in made)
        passes[operation] = {"message": msg.decode("ascii"), "passes": [text(p) for p in made]}
    json.dump(
        {
            "source": "python-challenge-bypass-ristretto 2022.6.30, as ZKAPAuthorizer 2022.8.21 calls it",
            "signing_key": text(signing_key.encode_base64()),
            "public_key": text(public_key.encode_base64()),
            "tokens": [
                {
                    "random": text(t.encode_base64()),
                    "blinded": text(b.encode_base64()),
                    "signed": text(s.encode_base64()),
                    "unblinded": text(u.encode_base64()),
                    "preimage": text(u.preimage().encode_base64()),
                }
                for t, b, s, u in zip(tokens, blinded, signed, unblinded)
            ],
            "batch_proof": text(proof.encode_base64()),
            "storage_index_hex": storage_index.hex(),
            "operations": passes,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
