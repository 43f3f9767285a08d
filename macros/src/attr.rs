//! Parsing of the `#[component(...)]` and `#[endpoint(...)]` arguments.
//!
//! Only the syntax is checked here (known keys, no duplicates, literal
//! types); the name rules live in `valid.rs`.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Attribute, Ident, Lit, LitBool, LitInt, LitStr};

use crate::ctxt::Ctxt;

/// `#[component(...)]` as written.
#[derive(Default)]
pub struct ComponentAttr {
    pub namespace: Option<LitStr>,
    /// `namespace = ...` was written, even if its value was not a string.
    pub namespace_given: bool,
    pub name: Option<LitStr>,
    pub labels: Vec<(Ident, LitStr)>,
    pub is_static: Option<Ident>,
    /// `stats = "method"`: a method whose value joins `$SRV.STATS`.
    pub stats: Option<LitStr>,
    /// `capabilities = "method"`: a method whose value the component's
    /// description publishes.
    pub capabilities: Option<LitStr>,
    /// `codec = "json" | "msgpack"`: the payload codec.
    pub codec: Option<LitStr>,
    /// `crate = "path"`: where the runtime is, when not at `::rotor`.
    pub krate: Option<LitStr>,
}

/// `#[endpoint(...)]` as written.
#[derive(Default)]
pub struct EndpointAttr {
    pub name: Option<LitStr>,
    pub idempotent: Option<LitBool>,
    /// `stats = "method"`: a method whose value is this endpoint's `data`
    /// in `$SRV.STATS`, in place of the component's.
    pub stats: Option<LitStr>,
    /// `max_request = 1048576`: the largest request payload, in bytes, in
    /// place of the runtime's `ROTOR_MAX_REQUEST`.
    pub max_request: Option<LitInt>,
}

const COMPONENT_KEYS: &str =
    "`namespace`, `name`, `labels`, `static`, `stats`, `capabilities`, `codec` or `crate`";
const ENDPOINT_KEYS: &str = "`name`, `idempotent`, `stats` or `max_request`";

/// Sets `slot` once; a second occurrence is an error on the key.
fn set_once<T>(cx: &Ctxt, slot: &mut Option<T>, key: &Ident, value: T, attr: &str) {
    if slot.is_some() {
        cx.error_spanned_by(key, format!("duplicate `{key}` in `#[{attr}]`; give it once"));
    } else {
        *slot = Some(value);
    }
}

/// The value of `key = "..."`, or an error spanned on the value.
fn string_value(cx: &Ctxt, meta: &ParseNestedMeta, key: &Ident) -> syn::Result<Option<LitStr>> {
    let value = meta.value()?;
    match value.parse::<Lit>()? {
        Lit::Str(s) => Ok(Some(s)),
        other => {
            cx.error_spanned_by(&other, format!("`{key}` takes a string literal, as in `{key} = \"...\"`"));
            Ok(None)
        }
    }
}

/// The value of `key = true|false`, or an error spanned on the value.
fn bool_value(cx: &Ctxt, meta: &ParseNestedMeta, key: &Ident) -> syn::Result<Option<LitBool>> {
    let value = meta.value()?;
    match value.parse::<Lit>()? {
        Lit::Bool(b) => Ok(Some(b)),
        other => {
            cx.error_spanned_by(&other, format!("`{key}` takes `true` or `false`, as in `{key} = false`"));
            Ok(None)
        }
    }
}

fn int_value(cx: &Ctxt, meta: &ParseNestedMeta, key: &Ident) -> syn::Result<Option<LitInt>> {
    let value = meta.value()?;
    match value.parse::<Lit>()? {
        Lit::Int(n) => Ok(Some(n)),
        other => {
            cx.error_spanned_by(&other, format!("`{key}` takes a size in bytes, as in `{key} = 1_048_576`"));
            Ok(None)
        }
    }
}

fn key_of(meta: &ParseNestedMeta) -> Ident {
    meta.path.get_ident().cloned().unwrap_or_else(|| Ident::new("_", meta.path.segments[0].ident.span()))
}

pub fn parse_component(cx: &Ctxt, args: TokenStream) -> ComponentAttr {
    let mut attr = ComponentAttr::default();
    let parser = syn::meta::parser(|meta| {
        let key = key_of(&meta);
        if meta.path.is_ident("namespace") {
            attr.namespace_given = true;
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut attr.namespace, &key, v, "component");
            }
        } else if meta.path.is_ident("name") {
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut attr.name, &key, v, "component");
            }
        } else if meta.path.is_ident("stats") {
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut attr.stats, &key, v, "component");
            }
        } else if meta.path.is_ident("capabilities") {
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut attr.capabilities, &key, v, "component");
            }
        } else if meta.path.is_ident("codec") {
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut attr.codec, &key, v, "component");
            }
        } else if meta.path.is_ident("crate") {
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut attr.krate, &key, v, "component");
            }
        } else if meta.path.is_ident("static") {
            if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
                cx.error_spanned_by(&key, "`static` is a flag and takes no value: write `static`");
                let _ = meta.input.parse::<TokenStream>();
            } else {
                set_once(cx, &mut attr.is_static, &key, key.clone(), "component");
            }
        } else if meta.path.is_ident("labels") {
            let mut seen_labels = false;
            meta.parse_nested_meta(|label| {
                seen_labels = true;
                let Some(name) = label.path.get_ident().cloned() else {
                    cx.error_spanned_by(&label.path, "a label name is a single identifier");
                    return Ok(());
                };
                if let Some(value) = string_value(cx, &label, &name)? {
                    if attr.labels.iter().any(|(k, _)| *k == name) {
                        cx.error_spanned_by(&name, format!("duplicate label `{name}`"));
                    } else {
                        attr.labels.push((name, value));
                    }
                }
                Ok(())
            })?;
            if !seen_labels {
                cx.error_spanned_by(&key, "`labels(...)` is empty; write `labels(key = \"value\")`");
            }
        } else {
            cx.error_spanned_by(
                &meta.path,
                format!("unknown `#[component]` argument `{}`; expected {COMPONENT_KEYS}", path_str(&meta)),
            );
            skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        cx.syn_error(e);
    }
    attr
}

pub fn parse_endpoint(cx: &Ctxt, attr: &Attribute) -> EndpointAttr {
    let mut out = EndpointAttr::default();
    if matches!(attr.meta, syn::Meta::Path(_)) {
        return out;
    }
    let result = attr.parse_nested_meta(|meta| {
        let key = key_of(&meta);
        if meta.path.is_ident("name") {
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut out.name, &key, v, "endpoint");
            }
        } else if meta.path.is_ident("idempotent") {
            if let Some(v) = bool_value(cx, &meta, &key)? {
                set_once(cx, &mut out.idempotent, &key, v, "endpoint");
            }
        } else if meta.path.is_ident("stats") {
            if let Some(v) = string_value(cx, &meta, &key)? {
                set_once(cx, &mut out.stats, &key, v, "endpoint");
            }
        } else if meta.path.is_ident("max_request") {
            if let Some(v) = int_value(cx, &meta, &key)? {
                set_once(cx, &mut out.max_request, &key, v, "endpoint");
            }
        } else {
            cx.error_spanned_by(
                &meta.path,
                format!("unknown `#[endpoint]` argument `{}`; expected {ENDPOINT_KEYS}", path_str(&meta)),
            );
            skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        cx.syn_error(e);
    }
    out
}

fn path_str(meta: &ParseNestedMeta) -> String {
    let segments: Vec<String> = meta.path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

/// Consumes `= value` or `(...)` after an unknown key so that the keys after
/// it are still checked.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}

/// Is this attribute `#[endpoint]` (or `#[rotor::endpoint]`)?
pub fn is_endpoint(attr: &Attribute) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == "endpoint")
}

/// The span to blame for a missing argument: the whole argument list.
pub fn args_span(args: &TokenStream) -> Span {
    let mut iter = args.clone().into_iter();
    match iter.next() {
        None => Span::call_site(),
        Some(first) => {
            let last = iter.last().unwrap_or_else(|| first.clone());
            first.span().join(last.span()).unwrap_or_else(|| first.span())
        }
    }
}
