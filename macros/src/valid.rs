//! Every rule a component must satisfy, each reported as an error spanned on
//! the token at fault. All rules run; `Ctxt` reports their errors together.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;
use rotor_names as names;
use syn::{LitStr, Pat, Type};

use crate::ast::{ArgKind, Component, Endpoint, Output, Receiver, Source};
use crate::ctxt::Ctxt;
use crate::expand::{CLIENT_METHODS, CONTRACT_CLIENT_ITEMS, TYPE_ITEMS, subject_const};

pub fn check(cx: &Ctxt, c: &Component, args_span: Span) {
    match c.source {
        Source::Impl(item) => {
            check_impl(cx, c, item);
            check_generated_names(cx, c, item);
        }
        Source::Trait(item) => check_trait(cx, c, item),
    }
    check_component_attr(cx, c, args_span);
    let mut by_name: HashMap<String, &Endpoint> = HashMap::new();
    for ep in &c.endpoints {
        check_endpoint(cx, ep, c.is_contract());
        let wire = ep.wire_name();
        if let Some(first) = by_name.get(&wire) {
            cx.error_spanned_by(
                name_token(ep),
                format!(
                    "two endpoints have the wire name `{wire}` (the other is method `{}`); give one \
                     a different `#[endpoint(name = \"...\")]`",
                    first.sig.ident
                ),
            );
        } else {
            by_name.insert(wire, ep);
        }
    }
    for attr in &c.stray_endpoint_attrs {
        cx.error_spanned_by(attr, "`#[endpoint]` goes on an `async fn` method, once");
    }
    if c.endpoints.is_empty() {
        let message = "this component has no endpoints; mark at least one `async fn` with `#[endpoint]`";
        match c.source {
            Source::Impl(item) if c.ident.is_some() && item.trait_.is_none() => {
                cx.error_spanned_by(&item.self_ty, message)
            }
            Source::Trait(item) if c.unmarked.is_empty() => cx.error_spanned_by(&item.ident, message),
            _ => {}
        }
    }
}

/// A contract trait: endpoints only, no generics, and nothing that would
/// need the implementing type (component statistics).
fn check_trait(cx: &Ctxt, c: &Component, item: &syn::ItemTrait) {
    for sig in &c.unmarked {
        cx.error_spanned_by(
            &sig.ident,
            format!(
                "every method of a contract trait is an endpoint: mark `{}` with `#[endpoint]`, or \
                 move it to the implementing type's own impl block",
                sig.ident
            ),
        );
    }
    for other in &c.other_trait_items {
        cx.error_spanned_by(
            other,
            "a contract trait holds `#[endpoint]` methods only: associated types and constants have no \
             meaning on the wire",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &item.generics,
            "a contract trait cannot be generic: a component has one identity on the wire",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "a contract trait cannot be `unsafe`");
    }
    if let Some(stats) = &c.attr.stats {
        cx.error_spanned_by(
            stats,
            "`stats` names a method of the implementing type, which a contract does not know: serve \
             the figures from an `#[endpoint]`, or use `stats` on an impl-block component",
        );
    }
    if let Some(capabilities) = &c.attr.capabilities {
        cx.error_spanned_by(
            capabilities,
            "`capabilities` names a method of the implementing type, which a contract does not know: \
             use `capabilities` on an impl-block component, or serve with `ServiceBuilder::capabilities`",
        );
    }
    for ep in &c.endpoints {
        if let Some(stats) = &ep.attr.stats {
            cx.error_spanned_by(stats, "`stats` is not available on a contract trait's endpoints");
        }
    }
}

/// The items `#[component]` adds to the type may not be in the user's
/// impl block already.
fn check_generated_names(cx: &Ctxt, c: &Component, impl_block: &syn::ItemImpl) {
    let subjects: Vec<String> = c.endpoints.iter().map(|ep| subject_const(&ep.sig.ident)).collect();
    for item in &impl_block.items {
        let ident = match item {
            syn::ImplItem::Fn(f) => &f.sig.ident,
            syn::ImplItem::Const(k) => &k.ident,
            _ => continue,
        };
        let name = ident.to_string();
        if TYPE_ITEMS.contains(&name.as_str()) || subjects.contains(&name) {
            let hint = if name == "client" && c.endpoints.iter().any(|ep| ep.sig.ident == "client") {
                "; rename the method and keep the wire name with `#[endpoint(name = \"client\")]`"
            } else {
                "; rename it"
            };
            cx.error_spanned_by(
                ident,
                format!("`{name}` is generated on this type by `#[component]`, so it cannot be defined here too{hint}"),
            );
        }
    }
}

fn check_impl(cx: &Ctxt, c: &Component, item: &syn::ItemImpl) {
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "`#[component]` goes on an inherent impl block (`impl MyType { .. }`), not a trait impl",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &item.generics,
            "generic components are not supported: a component has one identity on the wire; \
             implement it for a concrete type (a newtype or a type alias works)",
        );
    }
    if c.ident.is_none() {
        cx.error_spanned_by(&item.self_ty, "`#[component]` needs a named type, such as `impl Tokenizer`");
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "a component impl block cannot be `unsafe`");
    }
}

fn check_name(cx: &Ctxt, lit: &LitStr, check: fn(&str) -> Result<(), names::NameError>) {
    if let Err(e) = check(&lit.value()) {
        cx.error_spanned_by(lit, e);
    }
}

fn check_component_attr(cx: &Ctxt, c: &Component, args_span: Span) {
    let attr = &c.attr;
    match &attr.namespace {
        Some(ns) => check_name(cx, ns, names::validate_namespace),
        None if attr.namespace_given => {}
        None => cx.syn_error(syn::Error::new(
            args_span,
            "missing namespace: write `#[component(namespace = \"my_namespace\")]`",
        )),
    }
    match (&attr.name, c.ident) {
        (Some(name), _) => check_name(cx, name, names::validate_component),
        (None, Some(ident)) => {
            let default = names::snake_case(&ident.to_string());
            if let Err(e) = names::validate_component(&default) {
                cx.error_spanned_by(
                    ident,
                    format!("the default component name `{default}` derived from this type is invalid ({}); give one with `name = \"...\"`", e.problem_text()),
                );
            }
        }
        (None, None) => {}
    }
    if let Some(krate) = &attr.krate {
        if krate.parse::<syn::Path>().is_err() {
            cx.error_spanned_by(
                krate,
                "`crate` takes the path of the Rotor runtime, as in `crate = \"rotor_runtime\"` or \
                 `crate = \"::my_facade::rotor\"`",
            );
        }
    }
    if let Some(stats) = &attr.stats {
        check_stats_method(cx, stats, "the endpoint figures of `$SRV.STATS`");
    }
    if let Some(codec) = &attr.codec
        && !matches!(codec.value().as_str(), "json" | "msgpack")
    {
        cx.error_spanned_by(
            codec,
            format!(
                "unknown codec `{}`: `codec` is \"json\" (the default, readable by any tool) or \"msgpack\" \
                 (MessagePack)",
                codec.value()
            ),
        );
    }
    if let Some(capabilities) = &attr.capabilities
        && syn::parse_str::<syn::Ident>(&capabilities.value()).is_err()
    {
        cx.error_spanned_by(
            capabilities,
            "`capabilities` names a method of this type, as in `capabilities = \"capabilities\"`, whose \
             `Serialize` value the component's description publishes",
        );
    }
    for (key, _) in &attr.labels {
        if let Err(e) = names::validate_label(&key.to_string()) {
            cx.error_spanned_by(key, e);
        }
    }
}

/// `stats = "..."` names a method.
fn check_stats_method(cx: &Ctxt, stats: &syn::LitStr, joins: &str) {
    if syn::parse_str::<syn::Ident>(&stats.value()).is_err() {
        cx.error_spanned_by(
            stats,
            format!(
                "`stats` names a method of this type, as in `stats = \"cache_stats\"`, whose \
                 `Serialize` value joins {joins}"
            ),
        );
    }
}

fn check_endpoint(cx: &Ctxt, ep: &Endpoint, contract: bool) {
    let sig = &ep.sig;
    if let Some(max) = &ep.attr.max_request
        && !max.base10_parse::<usize>().is_ok_and(|n| n > 0)
    {
        cx.error_spanned_by(
            max,
            "`max_request` is the largest request in bytes: a whole number above 0, as in \
             `max_request = 1_048_576`",
        );
    }
    if let Some(stats) = &ep.attr.stats {
        check_stats_method(cx, stats, "this endpoint's figures in `$SRV.STATS`, in place of the component's");
    }
    match &ep.attr.name {
        Some(lit) => check_name(cx, lit, names::validate_endpoint),
        None => {
            if let Err(e) = names::validate_endpoint(&ep.wire_name()) {
                cx.error_spanned_by(
                    &sig.ident,
                    format!(
                        "the method name is not a valid endpoint name ({}); rename it or give a \
                         wire name with `#[endpoint(name = \"...\")]`",
                        e.problem_text()
                    ),
                );
            }
        }
    }
    let method = sig.ident.to_string();
    if CLIENT_METHODS.contains(&method.as_str())
        || (contract && CONTRACT_CLIENT_ITEMS.contains(&method.as_str()))
    {
        cx.error_spanned_by(
            &sig.ident,
            format!(
                "an endpoint method cannot be called `{method}`: the generated client has a method \
                 of that name; rename the method and keep the wire name with \
                 `#[endpoint(name = \"{method}\")]`"
            ),
        );
    }
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "an endpoint must be an `async fn`");
    }
    if let Some(t) = &sig.constness {
        cx.error_spanned_by(t, "an endpoint cannot be a `const fn`");
    }
    if let Some(t) = &sig.unsafety {
        cx.error_spanned_by(t, "an endpoint cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "an endpoint cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            "an endpoint cannot be generic: its request and response types are fixed on the wire",
        );
    }
    match &ep.receiver {
        Receiver::RefSelf => {}
        Receiver::Other(r) => cx.error_spanned_by(
            r,
            "an endpoint takes `&self`: instances serve many requests at once; use interior \
             mutability (a `Mutex` or atomics) for state",
        ),
        Receiver::Missing => {
            cx.error_spanned_by(&sig.ident, "an endpoint takes `&self` as its first argument")
        }
    }
    let mut seen_request = false;
    let mut seen_context = false;
    for arg in &ep.args {
        if !is_simple_pattern(arg.pat) {
            cx.error_spanned_by(
                arg.pat,
                "endpoint arguments must be plain identifiers (`req: Request`); destructure inside the body",
            );
        }
        if let Type::ImplTrait(_) = arg.ty {
            cx.error_spanned_by(arg.ty, "an endpoint argument cannot be `impl Trait`: name a concrete type");
        }
        match arg.kind {
            ArgKind::Context | ArgKind::ContextRef if seen_context => {
                cx.error_spanned_by(arg.ty, "an endpoint takes at most one `Context`");
            }
            ArgKind::Context | ArgKind::ContextRef => seen_context = true,
            ArgKind::Request if seen_request => cx.error_spanned_by(
                arg.pat,
                "an endpoint takes one request argument (and optionally a `Context`); \
                 put the fields in one request struct",
            ),
            ArgKind::Request => seen_request = true,
        }
    }
    match &ep.output {
        Output::Result { .. } => {}
        Output::Stream { err, early: Some(early), .. } => {
            if quote::quote!(#err).to_string() != quote::quote!(#early).to_string() {
                cx.error_spanned_by(
                    early,
                    "the early error of a streaming endpoint must be the type of its items' error, \
                     so that the client has one error type",
                );
            }
        }
        Output::Stream { .. } => {}
        Output::BadStream(ty) => cx.error_spanned_by(
            ty,
            "a streaming endpoint returns `impl Stream<Item = Result<Item, Error>>`: each item is \
             a `Result`, and an `Err` ends the stream",
        ),
        Output::Other(ty) => cx.error_spanned_by(
            ty,
            "an endpoint returns `Result<Response, Error>` (or, streaming, `impl Stream<Item = \
             Result<Item, Error>>`), where `Error` is an application error type that crosses the wire",
        ),
        Output::Unit => cx
            .error_spanned_by(&sig.ident, "an endpoint returns `Result<Response, Error>`; add a return type"),
    }
}

fn is_simple_pattern(pat: &Pat) -> bool {
    match pat {
        Pat::Ident(p) => p.by_ref.is_none() && p.subpat.is_none(),
        Pat::Wild(_) => true,
        _ => false,
    }
}

/// The token to blame for the endpoint's wire name.
fn name_token(ep: &Endpoint) -> proc_macro2::TokenStream {
    match &ep.attr.name {
        Some(lit) => lit.to_token_stream(),
        None => ep.sig.ident.to_token_stream(),
    }
}
