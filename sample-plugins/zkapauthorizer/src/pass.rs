//! Passes, byte for byte as ZKAPAuthorizer 2022.8.21 makes and checks them.
//!
//! A client redeems a voucher for tokens: it blinds random tokens, the issuer signs the
//! blinded tokens with its signing key and proves it with a batch DLEQ proof against its
//! public key, and the client unblinds the signatures ([`unblind`]). To pay for an
//! operation the client turns each unblinded token into a [`Pass`] bound to the operation
//! and storage index ([`Pass::new`]): the token's preimage and an HMAC-SHA-512 signature of
//! the operation's [`message`], keyed with a key derived from the token. The server, which
//! holds the issuer's signing key, re-derives the token from the preimage and checks the
//! signature ([`validate`]); a pass made for another operation or storage index fails.
//!
//! On the wire a pass is 177 bytes: the preimage and the signature in standard base64
//! (88 characters each), separated by one space.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use challenge_bypass_ristretto::voprf::{
    BatchDLEQProof, BlindedToken, PublicKey, SignedToken, Token, TokenPreimage,
    VerificationSignature,
};
pub use challenge_bypass_ristretto::voprf::{SigningKey, UnblindedToken};
use sha2::Sha512;

/// The length of a pass on the wire.
pub const PASS_LENGTH: usize = 177;
/// The length of each base64 half of a pass.
const PART_LENGTH: usize = 88;

/// The operations passes pay for, named as ZKAPAuthorizer's messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Allocating immutable shares.
    AllocateBuckets,
    /// Adding or renewing a lease.
    AddLease,
    /// Writing mutable shares.
    SlotTestvAndReadvAndWritev,
}

impl Operation {
    /// The label the message starts with.
    pub fn label(self) -> &'static str {
        match self {
            Self::AllocateBuckets => "allocate_buckets",
            Self::AddLease => "add_lease",
            Self::SlotTestvAndReadvAndWritev => "slot_testv_and_readv_and_writev",
        }
    }
}

/// The message a pass for `operation` on `storage_index` signs:
/// `"<label> <standard base64 of the storage index>"`.
pub fn message(operation: Operation, storage_index: &[u8; 16]) -> String {
    format!("{} {}", operation.label(), STANDARD.encode(storage_index))
}

/// The MAC of a pass.
type PassMac = hmac::Hmac<Sha512>;

/// One pass: a token's preimage and its signature of an operation's message.
#[derive(Clone)]
pub struct Pass {
    preimage: [u8; 64],
    signature: VerificationSignature,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A pass is a bearer token until it is spent: never in logs.
        f.write_str("Pass(..)")
    }
}

/// Why bytes are not a pass at all (as opposed to a pass whose signature fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedPass {
    /// Not 177 bytes.
    #[error("a pass is 177 bytes, not {0}")]
    Length(usize),
    /// Not two base64 halves of 88 characters around one space, each 64 bytes decoded.
    #[error("a pass is two base64 halves of 88 characters around one space")]
    Encoding,
}

impl Pass {
    /// The pass that `token` makes for `message`, as the client makes it.
    pub fn new(token: &UnblindedToken, message: &[u8]) -> Self {
        let key = token.derive_verification_key::<Sha512>();
        Self {
            preimage: token.t.to_bytes(),
            signature: key.sign::<PassMac>(message),
        }
    }

    /// Parses the 177-byte wire form.
    pub fn parse(bytes: &[u8]) -> Result<Self, MalformedPass> {
        if bytes.len() != PASS_LENGTH {
            return Err(MalformedPass::Length(bytes.len()));
        }
        if bytes[PART_LENGTH] != b' ' {
            return Err(MalformedPass::Encoding);
        }
        let preimage = STANDARD
            .decode(&bytes[..PART_LENGTH])
            .ok()
            .and_then(|decoded| <[u8; 64]>::try_from(decoded).ok())
            .ok_or(MalformedPass::Encoding)?;
        let signature = std::str::from_utf8(&bytes[PART_LENGTH + 1..])
            .ok()
            .and_then(|text| VerificationSignature::decode_base64(text).ok())
            .ok_or(MalformedPass::Encoding)?;
        Ok(Self {
            preimage,
            signature,
        })
    }

    /// The 177-byte wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = STANDARD.encode(self.preimage).into_bytes();
        out.push(b' ');
        out.extend_from_slice(self.signature.encode_base64().as_bytes());
        out
    }

    /// The token preimage: what the server records as spent.
    pub fn preimage(&self) -> &[u8; 64] {
        &self.preimage
    }

    /// Whether the issuer's `key` signed the token behind this pass and the pass signs
    /// `message`. Constant time in the signature.
    pub fn is_valid(&self, key: &SigningKey, message: &[u8]) -> bool {
        let Ok(preimage) = TokenPreimage::from_bytes(&self.preimage) else {
            return false;
        };
        key.rederive_unblinded_token(&preimage)
            .derive_verification_key::<Sha512>()
            .verify::<PassMac>(&self.signature, message)
    }
}

/// The outcome of checking a set of passes for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The preimages of the passes that are valid, in order.
    pub valid: Vec<[u8; 64]>,
    /// The indexes (into the passes given) of those whose signature check failed.
    pub signature_check_failed: Vec<usize>,
}

/// Checks every pass for `message` with the issuer's signing `key`, as ZKAPAuthorizer's
/// server does. Bytes that are not a pass at all fail the whole check, with the index of
/// the first such.
pub fn validate(
    key: &SigningKey,
    message: &[u8],
    passes: &[impl AsRef<[u8]>],
) -> Result<Validation, (usize, MalformedPass)> {
    let mut validation = Validation {
        valid: Vec::new(),
        signature_check_failed: Vec::new(),
    };
    for (index, bytes) in passes.iter().enumerate() {
        let pass = Pass::parse(bytes.as_ref()).map_err(|e| (index, e))?;
        if pass.is_valid(key, message) {
            validation.valid.push(pass.preimage);
        } else {
            validation.signature_check_failed.push(index);
        }
    }
    Ok(validation)
}

/// The issuer's side of a redemption: signs each blinded token and proves, with one batch
/// DLEQ proof, that all were signed with the key behind `key`'s public key.
pub fn sign_blinded(
    key: &SigningKey,
    blinded: &[BlindedToken],
    rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
) -> Result<(Vec<SignedToken>, BatchDLEQProof), String> {
    let signed = blinded
        .iter()
        .map(|b| key.sign(b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let proof =
        BatchDLEQProof::new::<Sha512, _>(rng, blinded, &signed, key).map_err(|e| e.to_string())?;
    Ok((signed, proof))
}

/// The client's side of a redemption: checks the issuer's proof and unblinds the signed
/// tokens (in the order of `tokens`).
pub fn unblind(
    proof: &BatchDLEQProof,
    tokens: &[Token],
    blinded: &[BlindedToken],
    signed: &[SignedToken],
    public_key: &PublicKey,
) -> Result<Vec<UnblindedToken>, String> {
    proof
        .verify_and_unblind::<Sha512, _>(tokens, blinded, signed, public_key)
        .map_err(|e| e.to_string())
}

/// A new random issuer signing key.
pub fn new_signing_key() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

/// Tokens redeemed from `key` the whole way (blind, sign, prove, unblind) in one process,
/// as an issuer and a client would do it over the network: for tests and benchmarks.
pub fn issue_tokens(key: &SigningKey, n: usize) -> Vec<UnblindedToken> {
    let tokens: Vec<Token> = (0..n)
        .map(|_| Token::random::<Sha512, _>(&mut rand_core::OsRng))
        .collect();
    let blinded: Vec<BlindedToken> = tokens.iter().map(Token::blind).collect();
    let (signed, proof) = sign_blinded(key, &blinded, &mut rand_core::OsRng).expect("signing");
    unblind(&proof, &tokens, &blinded, &signed, &key.public_key).expect("unblinding")
}

#[cfg(test)]
mod tests;
