//! A borrowed model of the annotated impl block or contract trait. It
//! classifies what it finds (receiver, context, request, return) without
//! judging it: `valid.rs` decides what is allowed, with the original tokens
//! at hand for spans.

use syn::{
    Attribute, FnArg, GenericArgument, ImplItem, ItemImpl, ItemTrait, Pat, PathArguments, ReturnType,
    Signature, TraitItem, Type,
};

use crate::attr::{self, ComponentAttr, EndpointAttr};
use crate::ctxt::Ctxt;

pub struct Component<'a> {
    pub source: Source<'a>,
    pub attr: ComponentAttr,
    /// The type's name when `Self` is a plain path, or the trait's name;
    /// `None` otherwise (an error).
    pub ident: Option<&'a syn::Ident>,
    pub endpoints: Vec<Endpoint<'a>>,
    /// `#[endpoint]` on something other than a method.
    pub stray_endpoint_attrs: Vec<&'a Attribute>,
    /// Methods of a contract trait without `#[endpoint]`.
    pub unmarked: Vec<&'a Signature>,
    /// Items of a contract trait other than methods.
    pub other_trait_items: Vec<&'a TraitItem>,
}

/// What `#[component]` was put on.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// An inherent impl block: the component is the type.
    Impl(&'a ItemImpl),
    /// A trait: a contract that any type may implement and serve.
    Trait(&'a ItemTrait),
}

pub struct Endpoint<'a> {
    pub sig: &'a Signature,
    pub attrs: &'a [Attribute],
    pub attr: EndpointAttr,
    pub receiver: Receiver<'a>,
    pub args: Vec<Arg<'a>>,
    pub output: Output<'a>,
}

pub enum Receiver<'a> {
    /// `&self`, the one that is allowed.
    RefSelf,
    /// Any other receiver (`self`, `&mut self`, `self: Arc<Self>`).
    Other(&'a syn::Receiver),
    /// No receiver at all: an associated function.
    Missing,
}

pub struct Arg<'a> {
    pub pat: &'a Pat,
    pub ty: &'a Type,
    pub kind: ArgKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// `ctx: Context` (passed by value).
    Context,
    /// `ctx: &Context`.
    ContextRef,
    Request,
}

pub enum Output<'a> {
    /// `-> Result<T, E>`.
    Result { ok: &'a Type, err: &'a Type },
    /// `-> impl Stream<Item = Result<T, E>>`, or with an early error,
    /// `-> Result<impl Stream<Item = Result<T, E>>, E>`.
    Stream { item: &'a Type, err: &'a Type, early: Option<&'a Type> },
    /// `impl Stream` whose `Item` is missing or not a `Result`.
    BadStream(&'a Type),
    /// Any other type.
    Other(&'a Type),
    /// No return type.
    Unit,
}

impl<'a> Component<'a> {
    pub fn is_contract(&self) -> bool {
        matches!(self.source, Source::Trait(_))
    }

    pub fn from_trait(cx: &Ctxt, item: &'a ItemTrait, attr: ComponentAttr) -> Self {
        let mut endpoints = Vec::new();
        let mut stray_endpoint_attrs = Vec::new();
        let mut unmarked = Vec::new();
        let mut other_trait_items = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(method) => {
                    let mut marks = method.attrs.iter().filter(|a| attr::is_endpoint(a));
                    match marks.next() {
                        Some(first) => {
                            stray_endpoint_attrs.extend(marks);
                            endpoints.push(Endpoint::from_sig(cx, &method.sig, &method.attrs, first));
                        }
                        None => unmarked.push(&method.sig),
                    }
                }
                other => other_trait_items.push(other),
            }
        }
        Component {
            source: Source::Trait(item),
            attr,
            ident: Some(&item.ident),
            endpoints,
            stray_endpoint_attrs,
            unmarked,
            other_trait_items,
        }
    }

    pub fn from_impl(cx: &Ctxt, item: &'a ItemImpl, attr: ComponentAttr) -> Self {
        let ident = match &*item.self_ty {
            Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
            _ => None,
        };
        let mut endpoints = Vec::new();
        let mut stray_endpoint_attrs = Vec::new();
        for impl_item in &item.items {
            match impl_item {
                ImplItem::Fn(method) => {
                    let mut marks = method.attrs.iter().filter(|a| attr::is_endpoint(a));
                    if let Some(first) = marks.next() {
                        stray_endpoint_attrs.extend(marks);
                        endpoints.push(Endpoint::from_sig(cx, &method.sig, &method.attrs, first));
                    }
                }
                ImplItem::Const(c) => {
                    stray_endpoint_attrs.extend(c.attrs.iter().filter(|a| attr::is_endpoint(a)))
                }
                ImplItem::Type(t) => {
                    stray_endpoint_attrs.extend(t.attrs.iter().filter(|a| attr::is_endpoint(a)))
                }
                _ => {}
            }
        }
        Component {
            source: Source::Impl(item),
            attr,
            ident,
            endpoints,
            stray_endpoint_attrs,
            unmarked: Vec::new(),
            other_trait_items: Vec::new(),
        }
    }
}

impl<'a> Endpoint<'a> {
    fn from_sig(cx: &Ctxt, sig: &'a Signature, attrs: &'a [Attribute], mark: &Attribute) -> Self {
        let attr = attr::parse_endpoint(cx, mark);
        let mut receiver = Receiver::Missing;
        let mut args = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => {
                    let plain_ref =
                        r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none();
                    receiver = if plain_ref { Receiver::RefSelf } else { Receiver::Other(r) };
                }
                FnArg::Typed(t) => args.push(Arg { pat: &t.pat, ty: &t.ty, kind: arg_kind(&t.ty) }),
            }
        }
        let output = match &sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => classify_output(ty),
        };
        Endpoint { sig, attrs, attr, receiver, args, output }
    }

    pub fn request(&self) -> Option<&Arg<'a>> {
        self.args.iter().find(|a| a.kind == ArgKind::Request)
    }

    /// The name on the wire, before validation: `name = "..."` or the method name.
    pub fn wire_name(&self) -> String {
        match &self.attr.name {
            Some(lit) => lit.value(),
            None => self.sig.ident.to_string().trim_start_matches("r#").to_string(),
        }
    }
}

/// The context is recognised by its type name: `Context`, `&Context` or a
/// path ending in `Context` (such as `rotor::Context`).
fn arg_kind(ty: &Type) -> ArgKind {
    match ty {
        Type::Reference(r) if r.mutability.is_none() && is_context(&r.elem) => ArgKind::ContextRef,
        _ if is_context(ty) => ArgKind::Context,
        _ => ArgKind::Request,
    }
}

fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| s.ident == "Context" && s.arguments.is_none())
        }
        Type::Paren(p) => is_context(&p.elem),
        _ => false,
    }
}

fn streamed<'a>(stream: &'a Type, early: Option<&'a Type>) -> Output<'a> {
    let item = stream_item(stream).expect("checked: a stream");
    match item.and_then(result_args) {
        Some((item, err)) => Output::Stream { item, err, early },
        None => Output::BadStream(stream),
    }
}

fn classify_output(ty: &Type) -> Output<'_> {
    match result_args(ty) {
        Some((ok, err)) if stream_item(ok).is_some() => streamed(ok, Some(err)),
        Some((ok, err)) => Output::Result { ok, err },
        None if stream_item(ty).is_some() => streamed(ty, None),
        None => Output::Other(ty),
    }
}

/// For `impl Stream<..> + ..`: `Some(Some(item))` with `Item = item`,
/// `Some(None)` without one; `None` for anything else.
fn stream_item(ty: &Type) -> Option<Option<&Type>> {
    let Type::ImplTrait(it) = ty else { return None };
    it.bounds.iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(tb) = bound else { return None };
        let last = tb.path.segments.last()?;
        if last.ident != "Stream" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else { return Some(None) };
        Some(args.args.iter().find_map(|a| match a {
            GenericArgument::AssocType(at) if at.ident == "Item" => Some(&at.ty),
            _ => None,
        }))
    })
}

/// `Result<T, E>` (by its last path segment, so `std::result::Result` works too).
fn result_args(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let ok = types.next()?;
    let err = types.next()?;
    types.next().is_none().then_some((ok, err))
}
