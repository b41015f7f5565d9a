//! What [`export_plugins!`](crate::export_plugins) expands to: the root module built from a
//! list of [`Plugin`] types, with every entry point guarded against panics.

use abi_stable::prefix_type::PrefixTypeTrait as _;
use abi_stable::std_types::{RResult, RStr, RVec};

use crate::ffi::{
    ClientPluginBox, HostApiBox, LibraryDescription, PluginDescription, PluginError, PluginLibrary,
    PluginLibraryRef, Roles, ServerPluginBox,
};
use crate::sdk::{client_box, guarded_sync, server_box, Host, Plugin, Settings};
use crate::value::from_cbor;

/// A list of plugins, implemented for tuples of [`Plugin`] types.
pub trait PluginList: 'static {
    /// Descriptions of every plugin in the list.
    fn descriptions() -> Vec<PluginDescription>;
    /// Builds the named plugin's server side; `None` if no plugin has that name.
    fn new_server(
        name: &str,
        settings: &Settings,
        host: &Host,
    ) -> Option<Result<ServerPluginBox, PluginError>>;
    /// Builds the named plugin's client side; `None` if no plugin has that name.
    fn new_client(
        name: &str,
        settings: &Settings,
        host: &Host,
    ) -> Option<Result<ClientPluginBox, PluginError>>;
}

fn description<P: Plugin>() -> PluginDescription {
    PluginDescription {
        name: P::NAME.into(),
        version: P::VERSION.into(),
        roles: P::ROLES,
        interests: P::INTERESTS,
    }
}

fn build_server<P: Plugin>(
    settings: &Settings,
    host: &Host,
) -> Result<ServerPluginBox, PluginError> {
    if !P::ROLES.contains(Roles::SERVER) {
        return Err(PluginError::unsupported("this plugin has no server side"));
    }
    P::server(settings, host.clone()).map(server_box)
}

fn build_client<P: Plugin>(
    settings: &Settings,
    host: &Host,
) -> Result<ClientPluginBox, PluginError> {
    if !P::ROLES.contains(Roles::CLIENT) {
        return Err(PluginError::unsupported("this plugin has no client side"));
    }
    P::client(settings, host.clone()).map(client_box)
}

macro_rules! tuple_list {
    ($($p:ident),+) => {
        impl<$($p: Plugin),+> PluginList for ($($p,)+) {
            fn descriptions() -> Vec<PluginDescription> {
                vec![$(description::<$p>()),+]
            }

            fn new_server(name: &str, settings: &Settings, host: &Host) -> Option<Result<ServerPluginBox, PluginError>> {
                $(if name == $p::NAME { return Some(build_server::<$p>(settings, host)); })+
                None
            }

            fn new_client(name: &str, settings: &Settings, host: &Host) -> Option<Result<ClientPluginBox, PluginError>> {
                $(if name == $p::NAME { return Some(build_client::<$p>(settings, host)); })+
                None
            }
        }
    };
}

tuple_list!(A);
tuple_list!(A, B);
tuple_list!(A, B, C);
tuple_list!(A, B, C, D);
tuple_list!(A, B, C, D, E);
tuple_list!(A, B, C, D, E, F);
tuple_list!(A, B, C, D, E, F, G);
tuple_list!(A, B, C, D, E, F, G, H);

/// The interface version this crate implements.
pub const INTERFACE_VERSION: (u16, u16) = (1, 2);

/// The description function body, for the macro.
#[doc(hidden)]
pub fn describe_list<L: PluginList>(panic_unwind: bool) -> LibraryDescription {
    let plugins = std::panic::catch_unwind(L::descriptions).unwrap_or_default();
    LibraryDescription {
        interface_major: INTERFACE_VERSION.0,
        interface_minor: INTERFACE_VERSION.1,
        panic_unwind,
        plugins: plugins.into(),
    }
}

fn settings_from(bytes: &RVec<u8>) -> Result<Settings, PluginError> {
    from_cbor(bytes).map_err(|e| PluginError {
        kind: crate::ffi::ErrorKind::BAD_INPUT,
        message: format!("settings: {e}").into(),
    })
}

fn unknown(name: &str) -> PluginError {
    PluginError::unsupported(format!("this library has no plugin named {name:?}"))
}

extern "C" fn new_server<L: PluginList>(
    name: RStr<'_>,
    settings: RVec<u8>,
    host: HostApiBox,
) -> RResult<ServerPluginBox, PluginError> {
    guarded_sync(|| {
        let settings = settings_from(&settings)?;
        L::new_server(name.as_str(), &settings, &Host::from_ffi(host))
            .unwrap_or_else(|| Err(unknown(name.as_str())))
    })
}

extern "C" fn new_client<L: PluginList>(
    name: RStr<'_>,
    settings: RVec<u8>,
    host: HostApiBox,
) -> RResult<ClientPluginBox, PluginError> {
    guarded_sync(|| {
        let settings = settings_from(&settings)?;
        L::new_client(name.as_str(), &settings, &Host::from_ffi(host))
            .unwrap_or_else(|| Err(unknown(name.as_str())))
    })
}

/// Builds the root module for a plugin list. `panic_unwind` must be evaluated in the
/// plugin's own crate (the macro does), since only its build knows its panic strategy.
#[doc(hidden)]
pub fn library<L: PluginList>(
    describe_fn: extern "C" fn() -> LibraryDescription,
) -> PluginLibraryRef {
    PluginLibrary {
        describe: describe_fn,
        new_server: new_server::<L>,
        new_client: new_client::<L>,
    }
    .leak_into_prefix()
}

/// Exports plugins from a `cdylib`: give it every [`Plugin`] type the library provides.
///
/// ```text
/// gbs_plugin_interface::export_plugins!(AccessLog, AllowList);
/// ```
///
/// The crate docs have a complete example.
#[macro_export]
macro_rules! export_plugins {
    ($($plugin:ty),+ $(,)?) => {
        const _: () = {
            use $crate::__private::abi_stable::library::{
                CheckTypeLayout, LibHeader, RootModuleResult, __call_root_module_loader,
            };

            extern "C" fn __gbs_describe() -> $crate::ffi::LibraryDescription {
                // Evaluated in the plugin's crate: its own panic strategy.
                $crate::__private::describe_list::<($($plugin,)+)>(cfg!(panic = "unwind"))
            }

            fn __gbs_plugin_root() -> $crate::ffi::PluginLibraryRef {
                $crate::__private::library::<($($plugin,)+)>(__gbs_describe)
            }

            extern "C" fn __gbs_erased_root() -> RootModuleResult {
                __call_root_module_loader(__gbs_plugin_root)
            }

            // What abi_stable's `#[export_root_module]` emits, spelled through this crate so
            // that plugins need no direct abi_stable dependency: the library header under the
            // symbol the loader looks up (`abi_stable::library::ROOT_MODULE_LOADER_NAME`).
            #[allow(unsafe_code, non_upper_case_globals)]
            #[unsafe(no_mangle)]
            pub static _1as_0lib_1header_0root_bmodule_bloader: LibHeader = unsafe {
                LibHeader::from_constructor::<$crate::ffi::PluginLibraryRef>(
                    __gbs_erased_root,
                    CheckTypeLayout::Yes,
                )
            };
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exported_symbol_is_the_one_abi_stable_loads() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
