//! `gbs-zkap`: the ZKAP plugin's own tool. Makes issuer keys and vouchers, and runs a demo
//! issuer that redeems vouchers as the original issuer's `/v1/redeem` does, so a client can
//! get tokens without any outside service.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine as _;
use clap::{Parser, Subcommand};
use gbs_sample_zkapauthorizer::pass::new_signing_key;
use gbs_sample_zkapauthorizer::redemption::{serve, Issuer};
use gbs_sample_zkapauthorizer::server::read_signing_key;
use gbs_sample_zkapauthorizer::spent::{PostgresStore, SqliteStore, StoreLocation};

#[derive(Debug, Parser)]
#[command(
    name = "gbs-zkap",
    version,
    about = "Keys, vouchers and a demo issuer for the ZKAP storage plugin"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new issuer signing key to FILE (mode 0600; an existing file is kept) and
    /// print its public key
    SigningKey {
        /// Where the key goes (the servers' ristretto-signing-key-path)
        file: PathBuf,
    },
    /// Print the public key of the signing key in FILE (for allowed-public-keys)
    PublicKey {
        /// The signing key file
        file: PathBuf,
    },
    /// Print a new random voucher
    Voucher,
    /// Serve POST /v1/redeem for vouchers, signing with the key in --signing-key; prints
    /// the issuer's root URL on the first line of stdout
    Issuer {
        /// The signing key file
        #[arg(long)]
        signing_key: PathBuf,
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// A voucher to refuse as unpaid (repeatable)
        #[arg(long)]
        unpaid: Vec<String>,
    },
    /// Copy the spent passes of a node's SQLite ledger into a PostgreSQL spent-pass store
    /// (creating its tables if needed), so that a node joining a fleet brings its history.
    /// Passes already spent there are left alone; running it twice changes nothing. Stop
    /// the node first, so that nothing is spent meanwhile.
    MigrateSpentPasses {
        /// The SQLite ledger (<node>/plugins-state/<plugin>/spent-passes.sqlite3)
        from: PathBuf,
        /// The store: a postgresql:// URL (as the servers' spent-pass-store)
        to: String,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gbs-zkap: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    match args.command {
        Command::SigningKey { file } => {
            let key = new_signing_key();
            write_new_secret(&file, key.encode_base64().as_bytes())?;
            println!("{}", key.public_key.encode_base64());
            Ok(())
        }
        Command::PublicKey { file } => {
            println!("{}", read_signing_key(&file)?.public_key.encode_base64());
            Ok(())
        }
        Command::Voucher => {
            let mut bytes = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
            println!(
                "{}",
                base64::engine::general_purpose::URL_SAFE.encode(bytes)
            );
            Ok(())
        }
        Command::Issuer {
            signing_key,
            listen,
            unpaid,
        } => {
            let key = read_signing_key(&signing_key)?;
            let listener = TcpListener::bind(&listen)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "http://{address}/");
            let _ = stdout.flush();
            serve(listener, Arc::new(Issuer::new(key, unpaid))).map_err(|e| e.to_string())
        }
        Command::MigrateSpentPasses { from, to } => migrate_spent_passes(&from, &to),
    }
}

/// Copies spent passes from the SQLite ledger `from` to the PostgreSQL store `to`, a page
/// at a time (memory stays bounded whatever the ledger's size).
fn migrate_spent_passes(from: &std::path::Path, to: &str) -> Result<(), String> {
    const PAGE: usize = 10_000;
    if !from.is_file() {
        return Err(format!("{} is not a ledger file", from.display()));
    }
    let target = match StoreLocation::parse(Some(to), from, from).map_err(|e| e.to_string())? {
        StoreLocation::Postgres(url) => url,
        StoreLocation::Sqlite(_) => return Err("the target must be a postgresql:// URL".into()),
    };
    let source = SqliteStore::open(from).map_err(|e| e.to_string())?;
    let store = PostgresStore::open(&target).map_err(|e| e.to_string())?;
    let (mut read, mut recorded) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = source
            .spent_passes(after.as_ref(), PAGE)
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.preimage);
        read += page.len() as u64;
        recorded += store.import(&page).map_err(|e| e.to_string())?;
    }
    println!(
        "{read} spent passes read from {}; {recorded} newly recorded in {}",
        from.display(),
        StoreLocation::Postgres(target)
    );
    Ok(())
}

/// Creates `path` with `bytes`, readable by its owner only; never replaces a file.
fn write_new_secret(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
