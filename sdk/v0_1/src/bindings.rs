//! wit-bindgen output for contract 0.1.0's two worlds; nothing here is public API.
//!
//! Both worlds share the `types` and `host` interfaces, so the planner's
//! bindings reuse the router's instead of generating a second copy of every
//! type.
#![allow(missing_docs)]

pub mod router {
    wit_bindgen::generate!({
        path: "../../wit/0.1.0",
        world: "router",
        pub_export_macro: true,
        export_macro_name: "__export_router_v0_1",
        additional_derives: [PartialEq],
        default_bindings_module: "pointsman_sdk_v0_1::__private::router",
    });
}

pub mod planner {
    wit_bindgen::generate!({
        path: "../../wit/0.1.0",
        world: "planner",
        pub_export_macro: true,
        export_macro_name: "__export_planner_v0_1",
        default_bindings_module: "pointsman_sdk_v0_1::__private::planner",
        with: {
            "pointsman:policy/types@0.1.0": super::router::pointsman::policy::types,
            "pointsman:policy/host@0.1.0": super::router::pointsman::policy::host,
        },
    });
}

pub use router::pointsman::policy::types;
