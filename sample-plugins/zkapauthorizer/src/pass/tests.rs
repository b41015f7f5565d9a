//! Passes and redemption against vectors recorded from the original Python code
//! (`vectors/make_vectors.py`: python-challenge-bypass-ristretto 2022.6.30, called as
//! ZKAPAuthorizer 2022.8.21 calls it).
//!
//! Signing a blinded token, unblinding and making a pass are deterministic, so where this
//! port produces the same bytes as the original, the original accepts what it produces and
//! the other way round.

use challenge_bypass_ristretto::voprf::{
    BatchDLEQProof, BlindedToken, PublicKey, SignedToken, SigningKey, Token, UnblindedToken,
};

use super::{message, sign_blinded, unblind, validate, MalformedPass, Operation, Pass};

fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/passes.json"))
        .expect("read vectors/passes.json");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn b64(value: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("a base64 string"))
        .expect("valid base64")
}

fn storage_index(v: &serde_json::Value) -> [u8; 16] {
    let hex = v["storage_index_hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

const OPERATIONS: [Operation; 3] = [
    Operation::AllocateBuckets,
    Operation::AddLease,
    Operation::SlotTestvAndReadvAndWritev,
];

#[test]
fn messages_are_the_originals() {
    let v = vectors();
    let si = storage_index(&v);
    for operation in OPERATIONS {
        assert_eq!(
            message(operation, &si),
            v["operations"][operation.label()]["message"]
                .as_str()
                .unwrap()
        );
    }
}

#[test]
fn passes_made_by_the_original_validate_here_and_ours_are_the_same_bytes() {
    let v = vectors();
    let key = SigningKey::from_bytes(&b64(&v["signing_key"])).unwrap();
    let si = storage_index(&v);
    let unblinded: Vec<UnblindedToken> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| UnblindedToken::from_bytes(&b64(&t["unblinded"])).unwrap())
        .collect();
    for operation in OPERATIONS {
        let recorded: Vec<Vec<u8>> = v["operations"][operation.label()]["passes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().as_bytes().to_vec())
            .collect();
        assert_eq!(recorded.len(), unblinded.len());
        let msg = message(operation, &si);
        let checked = validate(&key, msg.as_bytes(), &recorded).unwrap();
        assert_eq!(checked.valid.len(), recorded.len());
        assert!(checked.signature_check_failed.is_empty());
        for (token, original) in unblinded.iter().zip(&recorded) {
            assert_eq!(&Pass::new(token, msg.as_bytes()).to_bytes(), original);
        }
        // Input tried: the same passes for another operation and another storage index.
        for other in OPERATIONS.into_iter().filter(|o| *o != operation) {
            let other = message(other, &si);
            let checked = validate(&key, other.as_bytes(), &recorded).unwrap();
            assert!(
                checked.valid.is_empty(),
                "a pass worked for another operation"
            );
            assert_eq!(checked.signature_check_failed, [0, 1, 2, 3, 4]);
        }
        let elsewhere = message(operation, &[9; 16]);
        assert!(validate(&key, elsewhere.as_bytes(), &recorded)
            .unwrap()
            .valid
            .is_empty());
    }
}

#[test]
fn passes_signed_by_another_key_or_tampered_with_fail_by_index() {
    let v = vectors();
    let key = SigningKey::from_bytes(&b64(&v["signing_key"])).unwrap();
    let msg = v["operations"]["add_lease"]["message"].as_str().unwrap();
    let mut passes: Vec<Vec<u8>> = v["operations"]["add_lease"]["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().as_bytes().to_vec())
        .collect();
    // Input tried: a flipped signature character, and a preimage of another token.
    passes[1][100] = if passes[1][100] == b'A' { b'B' } else { b'A' };
    let other_preimage = passes[3][..88].to_vec();
    passes[2][..88].copy_from_slice(&other_preimage);
    let checked = validate(&key, msg.as_bytes(), &passes).unwrap();
    assert_eq!(checked.signature_check_failed, [1, 2]);
    assert_eq!(checked.valid.len(), 3);
    // Input tried: every pass checked with a key that is not the issuer's.
    let stranger = SigningKey::random(&mut rand_core::OsRng);
    let checked = validate(&stranger, msg.as_bytes(), &passes).unwrap();
    assert!(checked.valid.is_empty());
}

#[test]
fn malformed_passes_are_named_with_their_index() {
    let v = vectors();
    let key = SigningKey::from_bytes(&b64(&v["signing_key"])).unwrap();
    let good = v["operations"]["add_lease"]["passes"][0]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    // Inputs tried: a truncated pass, no space between the halves, a non-base64 half.
    let truncated = good[..176].to_vec();
    let mut no_space = good.clone();
    no_space[88] = b'x';
    let mut not_base64 = good.clone();
    not_base64[10] = b'*';
    for (bad, error) in [
        (truncated, MalformedPass::Length(176)),
        (no_space, MalformedPass::Encoding),
        (not_base64, MalformedPass::Encoding),
    ] {
        let passes = [good.clone(), bad];
        assert_eq!(validate(&key, b"m", &passes), Err((1, error)));
    }
}

#[test]
fn redemption_interoperates_with_the_original_issuer_and_client() {
    let v = vectors();
    let key = SigningKey::from_bytes(&b64(&v["signing_key"])).unwrap();
    let public_key = PublicKey::from_bytes(&b64(&v["public_key"])).unwrap();
    assert_eq!(key.public_key.to_bytes().to_vec(), b64(&v["public_key"]));
    let tokens_json = v["tokens"].as_array().unwrap();
    let tokens: Vec<Token> = tokens_json
        .iter()
        .map(|t| Token::from_bytes(&b64(&t["random"])).unwrap())
        .collect();
    let blinded: Vec<BlindedToken> = tokens.iter().map(Token::blind).collect();
    for (ours, original) in blinded.iter().zip(tokens_json) {
        assert_eq!(ours.to_bytes().to_vec(), b64(&original["blinded"]));
    }
    // Our issuer signs as the original did, and its proof convinces our client.
    let (signed, proof) = sign_blinded(&key, &blinded, &mut rand_core::OsRng).unwrap();
    for (ours, original) in signed.iter().zip(tokens_json) {
        assert_eq!(ours.to_bytes().to_vec(), b64(&original["signed"]));
    }
    let ours = unblind(&proof, &tokens, &blinded, &signed, &public_key).unwrap();
    // The original issuer's proof convinces our client, which unblinds the same tokens.
    let original_proof = BatchDLEQProof::from_bytes(&b64(&v["batch_proof"])).unwrap();
    let original_signed: Vec<SignedToken> = tokens_json
        .iter()
        .map(|t| SignedToken::from_bytes(&b64(&t["signed"])).unwrap())
        .collect();
    let theirs = unblind(
        &original_proof,
        &tokens,
        &blinded,
        &original_signed,
        &public_key,
    )
    .unwrap();
    for ((a, b), original) in ours.iter().zip(&theirs).zip(tokens_json) {
        assert_eq!(a.to_bytes().to_vec(), b64(&original["unblinded"]));
        assert_eq!(b.to_bytes().to_vec(), b64(&original["unblinded"]));
    }
    // Input tried: the original proof with one signed token swapped: refused.
    let mut swapped = original_signed.clone();
    swapped.swap(0, 1);
    assert!(unblind(&original_proof, &tokens, &blinded, &swapped, &public_key).is_err());
}
