//! Every GBS path, built in one place for both the server's routes and the client's URLs.

use super::{ShareNumber, StorageIndex};

/// Route templates, in axum's `{param}` syntax.
pub mod route {
    /// `GET` the version map.
    pub const VERSION: &str = "/storage/v1/version";
    /// `POST` allocate.
    pub const IMMUTABLE_ALLOCATE: &str = "/storage/v1/immutable/{si}";
    /// `PATCH` upload, `GET` read.
    pub const IMMUTABLE_SHARE: &str = "/storage/v1/immutable/{si}/{shnum}";
    /// `PUT` abort.
    pub const IMMUTABLE_ABORT: &str = "/storage/v1/immutable/{si}/{shnum}/abort";
    /// `GET` list.
    pub const IMMUTABLE_SHARES: &str = "/storage/v1/immutable/{si}/shares";
    /// `POST` advise corrupt.
    pub const IMMUTABLE_CORRUPT: &str = "/storage/v1/immutable/{si}/{shnum}/corrupt";
    /// `PUT` add or renew.
    pub const LEASE: &str = "/storage/v1/lease/{si}";
    /// `POST` read-test-write.
    pub const MUTABLE_READ_TEST_WRITE: &str = "/storage/v1/mutable/{si}/read-test-write";
    /// `GET` read.
    pub const MUTABLE_SHARE: &str = "/storage/v1/mutable/{si}/{shnum}";
    /// `GET` list.
    pub const MUTABLE_SHARES: &str = "/storage/v1/mutable/{si}/shares";
    /// `GET` the storage plugins and their announcements.
    pub const PLUGINS: &str = "/storage/v1/plugins";
    /// Any method: a storage plugin's own routes.
    pub const PLUGIN_ROUTE: &str = "/storage/v1/plugin/{name}/{*path}";
    /// Any method: a storage plugin's root route.
    pub const PLUGIN_ROOT: &str = "/storage/v1/plugin/{name}";
    /// `POST` advise corrupt.
    pub const MUTABLE_CORRUPT: &str = "/storage/v1/mutable/{si}/{shnum}/corrupt";
}

/// `/storage/v1/version`
pub fn version() -> String {
    route::VERSION.to_owned()
}

/// `/storage/v1/immutable/{si}`
pub fn immutable_allocate(si: &StorageIndex) -> String {
    format!("/storage/v1/immutable/{si}")
}

/// `/storage/v1/immutable/{si}/{shnum}`
pub fn immutable_share(si: &StorageIndex, shnum: ShareNumber) -> String {
    format!("/storage/v1/immutable/{si}/{shnum}")
}

/// `/storage/v1/immutable/{si}/{shnum}/abort`
pub fn immutable_abort(si: &StorageIndex, shnum: ShareNumber) -> String {
    format!("/storage/v1/immutable/{si}/{shnum}/abort")
}

/// `/storage/v1/immutable/{si}/shares`
pub fn immutable_shares(si: &StorageIndex) -> String {
    format!("/storage/v1/immutable/{si}/shares")
}

/// `/storage/v1/{kind}/{si}/{shnum}/corrupt`
pub fn corrupt(kind: super::ShareKind, si: &StorageIndex, shnum: ShareNumber) -> String {
    format!("/storage/v1/{}/{si}/{shnum}/corrupt", kind.as_str())
}

/// `/storage/v1/lease/{si}`
pub fn lease(si: &StorageIndex) -> String {
    format!("/storage/v1/lease/{si}")
}

/// `/storage/v1/mutable/{si}/read-test-write`
pub fn mutable_read_test_write(si: &StorageIndex) -> String {
    format!("/storage/v1/mutable/{si}/read-test-write")
}

/// `/storage/v1/mutable/{si}/{shnum}`
pub fn mutable_share(si: &StorageIndex, shnum: ShareNumber) -> String {
    format!("/storage/v1/mutable/{si}/{shnum}")
}

/// `/storage/v1/mutable/{si}/shares`
pub fn mutable_shares(si: &StorageIndex) -> String {
    format!("/storage/v1/mutable/{si}/shares")
}

/// `/storage/v1/plugins`
pub fn plugins() -> String {
    route::PLUGINS.to_owned()
}

/// `/storage/v1/plugin/{name}/{path}`, or `/storage/v1/plugin/{name}` for an empty path.
/// `name` and `path` are used as given; callers pass plugin names and paths they trust.
pub fn plugin_route(name: &str, path: &str) -> String {
    if path.is_empty() {
        format!("/storage/v1/plugin/{name}")
    } else {
        format!("/storage/v1/plugin/{name}/{}", path.trim_start_matches('/'))
    }
}
