//! Code generation. The output stays thin: constants, a descriptor, a
//! dispatch `match`, and a client whose methods are one call each into
//! `#krate::__private`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use rotor_names as names;
use syn::spanned::Spanned;
use syn::{Item, ItemImpl, LitStr, Type};

use crate::ast::{ArgKind, Component, Endpoint, Output, Source};
use crate::attr;
use crate::ctxt::Ctxt;
use crate::valid;

/// The methods of every generated client besides one per endpoint: its own
/// and those of the traits it derives (`Clone`, `Debug`). A test expands a
/// component and checks that this is exactly what the client has.
pub const CLIENT_METHODS: &[&str] = &[
    "__schemas",
    "clone",
    "core",
    "direct",
    "fan_out",
    "fmt",
    "with_retries",
    "with_router",
    "with_timeout",
];

/// The associated items a contract's client has besides those of every
/// client: an endpoint method may not take these names either.
pub const CONTRACT_CLIENT_ITEMS: &[&str] = &["connect"];

/// The items generated on the component's own type besides one
/// [`subject_const`] per endpoint; checked by the same test.
pub const TYPE_ITEMS: &[&str] = &["client", "NAMESPACE", "COMPONENT", "SERVICE"];

/// The name of the generated constant that holds an endpoint method's
/// queue-group subject.
pub fn subject_const(method: &Ident) -> String {
    format!("{}_SUBJECT", method.to_string().trim_start_matches("r#").to_uppercase())
}

pub fn component(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(item) => item,
        Err(e) => return with_errors(input, e),
    };
    let mut item = match item {
        Item::Impl(i) => i,
        Item::Trait(t) => return contract(args, t),
        other => {
            let err = syn::Error::new(
                item_keyword_span(&other),
                "`#[component]` goes on an inherent impl block, such as `impl Tokenizer { .. }`, \
                 or on a trait that declares a contract, such as `trait Tokenizer { .. }`",
            );
            return with_errors(input, err);
        }
    };
    let cx = Ctxt::default();
    let args_span = attr::args_span(&args);
    let component_attr = attr::parse_component(&cx, args);
    let model = Component::from_impl(&cx, &item, component_attr);
    valid::check(&cx, &model, args_span);
    let errors = cx.check();
    // With errors, the items the rest of the crate relies on are still
    // emitted, without their logic, so that one mistake gives one error,
    // not one more at every use of the component.
    let generated = generate(&model, errors.is_err());
    strip_endpoint_attrs(&mut item);
    match errors {
        Ok(()) => quote!(#item #generated),
        Err(e) => with_errors(quote!(#item #generated), e),
    }
}

/// `#[component]` on a trait: the trait, with its endpoints' futures made
/// `Send`, a `{Trait}Server<T>` that serves any `T` implementing it, and the
/// typed client, `{Trait}Client`.
fn contract(args: TokenStream, mut item: syn::ItemTrait) -> TokenStream {
    let cx = Ctxt::default();
    let args_span = attr::args_span(&args);
    let component_attr = attr::parse_component(&cx, args);
    let model = Component::from_trait(&cx, &item, component_attr);
    valid::check(&cx, &model, args_span);
    let errors = cx.check();
    let generated = generate(&model, errors.is_err());
    rewrite_contract(&mut item);
    match errors {
        Ok(()) => quote!(#item #generated),
        Err(e) => with_errors(quote!(#item #generated), e),
    }
}

/// The contract trait as it is emitted: `Send + Sync + 'static`, each
/// `async fn` a `fn` returning a `Send` future (so that the server can run
/// it on any thread; an implementation still writes `async fn`), and the
/// `#[endpoint]` marks gone.
fn rewrite_contract(item: &mut syn::ItemTrait) {
    item.supertraits.push(syn::parse_quote!(::core::marker::Send));
    item.supertraits.push(syn::parse_quote!(::core::marker::Sync));
    item.supertraits.push(syn::parse_quote!('static));
    for trait_item in &mut item.items {
        let syn::TraitItem::Fn(method) = trait_item else { continue };
        method.attrs.retain(|a| !attr::is_endpoint(a));
        if method.sig.asyncness.take().is_none() {
            continue;
        }
        let output = match &method.sig.output {
            syn::ReturnType::Default => quote!(()),
            syn::ReturnType::Type(_, ty) => {
                let mut ty = (**ty).clone();
                send_impls(&mut ty);
                quote!(#ty)
            }
        };
        method.sig.output = syn::parse_quote! {
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
        };
        if let Some(body) = method.default.take() {
            method.default = Some(syn::parse_quote!({ async move #body }));
        }
    }
}

/// Adds `Send` to every `impl Trait` in `ty`: a stream the server sends
/// from must be `Send` too.
fn send_impls(ty: &mut Type) {
    use syn::visit_mut::VisitMut;
    struct AddSend;
    impl VisitMut for AddSend {
        fn visit_type_impl_trait_mut(&mut self, it: &mut syn::TypeImplTrait) {
            syn::visit_mut::visit_type_impl_trait_mut(self, it);
            it.bounds.push(syn::parse_quote!(::core::marker::Send));
        }
    }
    AddSend.visit_type_mut(ty);
}

/// The user's item, followed by the errors: the item stays visible to the
/// rest of the crate and to rust-analyzer.
fn with_errors(item: TokenStream, err: syn::Error) -> TokenStream {
    let errors = err.into_compile_error();
    quote!(#item #errors)
}

fn item_keyword_span(item: &Item) -> Span {
    match item {
        Item::Struct(s) => s.struct_token.span,
        Item::Enum(e) => e.enum_token.span,
        Item::Fn(f) => f.sig.fn_token.span,
        Item::Trait(t) => t.trait_token.span,
        Item::Mod(m) => m.mod_token.span,
        other => other.span(),
    }
}

fn strip_endpoint_attrs(item: &mut ItemImpl) {
    for impl_item in &mut item.items {
        let attrs = match impl_item {
            syn::ImplItem::Fn(f) => &mut f.attrs,
            syn::ImplItem::Const(c) => &mut c.attrs,
            syn::ImplItem::Type(t) => &mut t.attrs,
            _ => continue,
        };
        attrs.retain(|a| !attr::is_endpoint(a));
    }
}

/// Where generated code finds the runtime: `::rotor`, or `crate = ".."`.
fn paths(c: &Component) -> (TokenStream, TokenStream) {
    let krate = match &c.attr.krate {
        Some(lit) => lit.parse::<syn::Path>().map(|p| quote!(#p)).unwrap_or_else(|_| quote!(::rotor)),
        None => quote!(::rotor),
    };
    let private =
        format_ident!("__private_{}_{}", env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"));
    let private = quote!(#krate::#private);
    (krate, private)
}

/// The generated items; with `fallback`, for a component with errors, only
/// their signatures: no dispatch, no registration, and client methods that
/// cannot be reached, since the crate does not build.
fn generate(c: &Component, fallback: bool) -> TokenStream {
    let (krate, private) = paths(c);
    let Some(ident) = c.ident else { return TokenStream::new() };
    let contract = c.is_contract();
    let impl_block = match c.source {
        Source::Impl(item) => Some(item),
        Source::Trait(_) => None,
    };
    let generic = match c.source {
        Source::Impl(item) => !item.generics.params.is_empty(),
        Source::Trait(item) => !item.generics.params.is_empty(),
    };
    if fallback && generic {
        return TokenStream::new();
    }
    let client = format_ident!("{}Client", ident);
    let fan_out = format_ident!("{}FanOut", ident);
    let namespace = c.attr.namespace.as_ref().map(LitStr::value).unwrap_or_default();
    let name = match &c.attr.name {
        Some(lit) => lit.value(),
        None => names::snake_case(&ident.to_string()),
    };
    let service = names::service_name(&namespace, &name);
    let is_static = c.attr.is_static.is_some();
    let type_name = ident.to_string();
    let labels = c.attr.labels.iter().map(|(k, v)| {
        let k = k.to_string();
        quote!((#k, #v))
    });

    // A fallback leaves out what would clash with the user's own items or
    // what cannot be typed: each already has its error.
    let user_items: Vec<String> = impl_block
        .iter()
        .flat_map(|item| &item.items)
        .filter_map(|item| match item {
            syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            syn::ImplItem::Const(k) => Some(k.ident.to_string()),
            _ => None,
        })
        .collect();
    let reserved = |method: &str| {
        CLIENT_METHODS.contains(&method) || (contract && CONTRACT_CLIENT_ITEMS.contains(&method))
    };
    // A contract's server holds the implementation in its field.
    let receiver = if contract { quote!(self.0) } else { quote!(self) };
    let format = match c.attr.codec.as_ref().map(LitStr::value).as_deref() {
        Some("msgpack") => quote!(#private::Format::MessagePack),
        _ => quote!(#private::Format::Json),
    };
    let free = |name: &str| !fallback || !user_items.iter().any(|u| u == name);
    let endpoints: Vec<EndpointGen> = c
        .endpoints
        .iter()
        .enumerate()
        .filter(|(_, ep)| {
            !fallback
                || (matches!(ep.output, Output::Result { .. } | Output::Stream { .. })
                    && ep.sig.generics.params.is_empty()
                    && !reserved(&ep.sig.ident.to_string()))
        })
        .map(|(i, ep)| EndpointGen::new(i, ep, &service, (&krate, &private, &receiver, &format), fallback))
        .collect();
    let descriptors = endpoints.iter().map(EndpointGen::descriptor);
    let subject_consts =
        endpoints.iter().filter(|ep| free(&subject_const(ep.method()))).map(EndpointGen::subject_const);
    let arms = endpoints.iter().filter(|_| !fallback).map(EndpointGen::dispatch_arm);
    let client_methods = endpoints.iter().map(EndpointGen::client_method);
    let fan_out_methods = endpoints.iter().filter_map(EndpointGen::fan_out_method);
    let own_const = |name: &str, doc: &str, value: &str| {
        let ident = format_ident!("{name}");
        free(name).then(|| quote! { #[doc = #doc] pub const #ident: &'static str = #value; })
    };

    let extra_stats = c.attr.stats.as_ref().filter(|_| !contract).and_then(|lit| {
        // Not an identifier: an error already says so.
        let mut method = syn::parse_str::<Ident>(&lit.value()).ok()?;
        method.set_span(lit.span());
        let private = respanned(&private, lit.span());
        Some(quote_spanned! {lit.span()=>
            fn extra_stats(&self) -> ::core::option::Option<#private::serde_json::Value> {
                #private::stats_value(&self.#method())
            }
        })
    });
    let capabilities = c.attr.capabilities.as_ref().filter(|_| !contract).and_then(|lit| {
        let mut method = syn::parse_str::<Ident>(&lit.value()).ok()?;
        method.set_span(lit.span());
        let private = respanned(&private, lit.span());
        let krate = respanned(&krate, lit.span());
        Some(quote_spanned! {lit.span()=>
            fn capabilities(&self) -> ::core::result::Result<
                ::core::option::Option<#private::serde_json::Value>,
                #krate::Error,
            > {
                #private::capabilities_value(&self.#method())
            }
        })
    });
    let endpoint_stats = {
        let arms: Vec<TokenStream> = endpoints
            .iter()
            .filter_map(|ep| {
                let lit = ep.ep.attr.stats.as_ref().filter(|_| !contract)?;
                let mut method = syn::parse_str::<Ident>(&lit.value()).ok()?;
                method.set_span(lit.span());
                let (index, private) = (ep.index, respanned(&private, lit.span()));
                Some(quote_spanned!(lit.span()=> #index => #private::stats_value(&self.#method()),))
            })
            .collect();
        (!arms.is_empty()).then(|| {
            quote! {
                fn endpoint_stats(&self, endpoint: usize) -> ::core::option::Option<#private::serde_json::Value> {
                    match endpoint {
                        #(#arms)*
                        _ => ::core::option::Option::None,
                    }
                }
            }
        })
    };
    let namespace_const =
        own_const("NAMESPACE", &format!("Namespace of this component: `{namespace}`."), &namespace);
    let component_const = own_const("COMPONENT", &format!("Name of this component: `{name}`."), &name);
    let service_const =
        own_const("SERVICE", &format!("NATS micro service name of this component: `{service}`."), &service);
    let client_doc = match contract {
        false => format!(
            "Typed client of the `{namespace}/{name}` component ([`{ident}`]), made by \
             [`{ident}::client`]. Cheap to clone; clones share the instance cache."
        ),
        true => format!(
            "Typed client of the `{namespace}/{name}` component, whose contract is [`{ident}`], made \
             by [`{client}::connect`]. Cheap to clone; clones share the instance cache."
        ),
    };
    let fan_out_doc = format!(
        "Calls each unary endpoint of `{namespace}/{name}` on every instance listed when the call \
         starts, made by [`{client}::fan_out`]. Each method yields `(instance, outcome)` as each \
         instance answers."
    );
    let descriptor = quote! {
        #krate::ComponentDescriptor {
            namespace: #namespace,
            name: #name,
            service: #service,
            version: ::core::env!("CARGO_PKG_VERSION"),
            type_name: #type_name,
            labels: &[#(#labels),*],
            is_static: #is_static,
            codec: #format,
            endpoints: &[#(#descriptors),*],
        }
    };
    let handle = quote! {
        fn handle(
            self: #private::Arc<Self>,
            endpoint: usize,
            request: #private::Request,
        ) -> #private::BoxFuture<'static, #private::Outcome> {
            match endpoint {
                #(#arms)*
                _ => #private::unknown_endpoint(&request),
            }
        }

        fn client(core: #private::ClientCore) -> #client {
            #client { core }
        }

        fn schemas() -> ::std::vec::Vec<#krate::describe::EndpointSchemas> {
            #client::__schemas()
        }
    };
    let schema_rows = endpoints.iter().filter(|_| !fallback).map(EndpointGen::schemas);
    let schemas_fn = quote! {
        #[doc(hidden)]
        pub fn __schemas() -> ::std::vec::Vec<#krate::describe::EndpointSchemas> {
            #[allow(unused_imports)]
            use #private::{HasSchema as _, NoSchema as _};
            ::std::vec![#(#schema_rows),*]
        }
    };

    // Where the names live, how a client is made, and what is served.
    let (served, names_on, constructor) = match impl_block {
        Some(item) => {
            let self_ty = &item.self_ty;
            let client_fn = free("client").then(|| {
                quote! {
                    /// A typed client of this component, routed through `rt`'s
                    /// discovery and transport.
                    pub async fn client(rt: &#krate::Runtime) -> ::core::result::Result<#client, #krate::Error> {
                        #private::client::<Self>(rt).await
                    }
                }
            });
            let registration = (!fallback).then(|| {
                quote! {
                    #private::inventory::submit! {
                        #private::Registered(<#self_ty as #krate::Endpoints>::DESCRIPTOR)
                    }
                }
            });
            let served = quote! {
                impl #krate::Endpoints for #self_ty {
                    type Client = #client;
                    const DESCRIPTOR: &'static #krate::ComponentDescriptor = &#descriptor;
                    #handle
                    #extra_stats
                    #endpoint_stats
                    #capabilities
                }

                #registration
            };
            (served, quote!(#self_ty), client_fn)
        }
        None => {
            let server = format_ident!("{}Server", ident);
            let described = format_ident!("__ROTOR_CONTRACT_{}", ident.to_string().to_uppercase());
            let server_doc = format!(
                "Serves any type that implements the contract [`{ident}`] as the `{namespace}/{name}` \
                 component: `rt.serve({server}(value))`."
            );
            let registration = (!fallback).then(|| {
                quote! {
                    #private::inventory::submit! { #private::Registered(&#described) }
                }
            });
            let served = quote! {
                #[doc(hidden)]
                #[allow(non_upper_case_globals)]
                static #described: #krate::ComponentDescriptor = #descriptor;

                #[doc = #server_doc]
                pub struct #server<T>(pub T);

                impl<T: #ident> #krate::Endpoints for #server<T> {
                    type Client = #client;
                    const DESCRIPTOR: &'static #krate::ComponentDescriptor = &#described;
                    #handle
                }

                #registration
            };
            let connect = quote! {
                /// A typed client of this component, routed through `rt`'s
                /// discovery and transport.
                pub async fn connect(rt: &#krate::Runtime) -> ::core::result::Result<Self, #krate::Error> {
                    let core = #private::client_for(rt, &#described, Self::__schemas).await?;
                    ::core::result::Result::Ok(Self { core })
                }
            };
            (served, quote!(#client), Some(connect))
        }
    };
    // On a contract, the names are the client's: the program that has the
    // client may have nothing else of the component.
    let (names_impl, client_names) = match contract {
        false => (
            quote! {
                impl #names_on {
                    #namespace_const
                    #component_const
                    #service_const
                    #(#subject_consts)*
                    #constructor
                }
            },
            quote!(),
        ),
        true => (
            quote!(),
            quote! {
                #namespace_const
                #component_const
                #service_const
                #(#subject_consts)*
                #constructor
            },
        ),
    };

    quote! {
        #names_impl

        #served

        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        pub struct #client {
            core: #private::ClientCore,
        }

        impl #client {
            #client_names

            #(#client_methods)*

            #schemas_fn

            /// The same client, sending every call to one instance.
            pub fn direct(&self, instance: #krate::InstanceId) -> Self {
                Self { core: self.core.direct(instance) }
            }

            /// The same client, choosing instances with `router`.
            pub fn with_router(&self, router: #krate::Router) -> Self {
                Self { core: self.core.with_router(router) }
            }

            /// The same client, with `timeout` for every call.
            pub fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { core: self.core.with_timeout(timeout) }
            }

            /// The same client, retrying an idempotent call on another
            /// instance up to `retries` times when its instance is gone.
            pub fn with_retries(&self, retries: u32) -> Self {
                Self { core: self.core.with_retries(retries) }
            }

            /// The untyped client underneath, for instance lists and waits.
            pub fn core(&self) -> &#private::ClientCore {
                &self.core
            }

            /// Calls an endpoint on every instance listed now, under one
            /// deadline (the client's timeout unless `options` gives one).
            pub fn fan_out(&self, options: #krate::FanOut) -> #fan_out {
                #fan_out { core: self.core.clone(), options }
            }
        }

        #[doc = #fan_out_doc]
        #[derive(Clone, Debug)]
        pub struct #fan_out {
            core: #private::ClientCore,
            options: #krate::FanOut,
        }

        impl #fan_out {
            #(#fan_out_methods)*
        }
    }
}

struct EndpointGen<'a> {
    krate: &'a TokenStream,
    private: &'a TokenStream,
    /// What the handler's method is called on: `self`, or a contract
    /// server's `self.0`.
    receiver: &'a TokenStream,
    /// The component's payload codec, a `Format` expression.
    format: &'a TokenStream,
    /// Only signatures: the component has errors.
    fallback: bool,
    index: usize,
    ep: &'a Endpoint<'a>,
    wire: String,
    subject: String,
    request: Option<&'a Type>,
    /// The response type, or for a stream the item type.
    ok: &'a Type,
    err: &'a Type,
    /// `Some(has_early_error)` for a streaming endpoint.
    stream: Option<bool>,
}

impl<'a> EndpointGen<'a> {
    fn new(
        index: usize,
        ep: &'a Endpoint<'a>,
        service: &str,
        (krate, private, receiver, format): (
            &'a TokenStream,
            &'a TokenStream,
            &'a TokenStream,
            &'a TokenStream,
        ),
        fallback: bool,
    ) -> Self {
        let wire = ep.wire_name();
        let subject = names::endpoint_subject(service, &wire);
        let (ok, err, stream) = match &ep.output {
            Output::Result { ok, err } => (*ok, *err, None),
            Output::Stream { item, err, early } => (*item, *err, Some(early.is_some())),
            _ => unreachable!("validated, or left out of a fallback: returns Result or a stream"),
        };
        EndpointGen {
            krate,
            private,
            receiver,
            format,
            fallback,
            index,
            ep,
            wire,
            subject,
            request: ep.request().map(|a| a.ty),
            ok,
            err,
            stream,
        }
    }

    fn method(&self) -> &Ident {
        &self.ep.sig.ident
    }

    fn request_ty(&self) -> TokenStream {
        match self.request {
            Some(ty) => quote!(#ty),
            None => quote!(()),
        }
    }

    fn descriptor(&self) -> TokenStream {
        let krate = self.krate;
        let EndpointGen { wire, subject, ok, err, .. } = self;
        let method = self.method().to_string();
        let request = match self.request {
            Some(ty) => tokens_text(ty),
            None => "()".to_string(),
        };
        let (ok, err) = (tokens_text(ok), tokens_text(err));
        let idempotent = self.ep.attr.idempotent.as_ref().is_none_or(|b| b.value);
        let streaming = self.stream.is_some();
        // Validated: a whole number above 0, the literal as written.
        let max_request = match self.ep.attr.max_request.as_ref().and_then(|n| n.base10_parse::<usize>().ok())
        {
            Some(n) => quote!(::core::option::Option::Some(#n)),
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #krate::EndpointDescriptor {
                name: #wire,
                method: #method,
                subject: #subject,
                request: #request,
                response: #ok,
                error: #err,
                idempotent: #idempotent,
                streaming: #streaming,
                max_request: #max_request,
            }
        }
    }

    fn subject_const(&self) -> TokenStream {
        let name = format_ident!("{}", subject_const(self.method()));
        let doc = format!(
            "Queue-group subject of endpoint `{}` (answered by any instance): `{}`.",
            self.wire, self.subject
        );
        let subject = &self.subject;
        quote! {
            #[doc = #doc]
            pub const #name: &'static str = #subject;
        }
    }

    /// The three codecs, each built by a call spanned on the user's type, so
    /// that a type that is not a serde type is reported there, once.
    fn codecs(&self) -> TokenStream {
        let (private, format) = (self.private, self.format);
        let req = match self.request {
            Some(ty) => {
                let private = respanned(private, ty.span());
                quote_spanned!(ty.span()=> #private::request_codec::<#ty>(#format))
            }
            None => quote!(#private::request_codec::<()>(#format)),
        };
        let (ok, err) = (self.ok, self.err);
        let ok = {
            let private = respanned(private, ok.span());
            quote_spanned!(ok.span()=> #private::response_codec::<#ok>(#format))
        };
        let err = {
            let private = respanned(private, err.span());
            quote_spanned!(err.span()=> #private::error_codec::<#err>())
        };
        quote!((#req, #ok, #err))
    }

    fn dispatch_arm(&self) -> TokenStream {
        let (krate, private) = (self.krate, self.private);
        let index = self.index;
        let method = self.method();
        let req_ty = self.request_ty();
        let codecs = self.codecs();
        let call_args = self.ep.args.iter().map(|a| match a.kind {
            ArgKind::Context => quote!(ctx),
            ArgKind::ContextRef => quote!(&ctx),
            ArgKind::Request => quote!(req),
        });
        // Spanned on the method so that a handler future that is not `Send`
        // is reported on the user's method, not on the attribute.
        let receiver = self.receiver;
        let call = quote_spanned!(method.span()=> #receiver.#method(#(#call_args),*).await);
        let handler = match self.stream {
            None => quote_spanned! {method.span()=>
                move |ctx: #krate::Context, req: #req_ty| async move {
                    let _ = (&ctx, &req);
                    #call
                }
            },
            Some(early) => {
                let send = if early {
                    quote!(match #call {
                        ::core::result::Result::Ok(stream) => sink.send(stream).await,
                        ::core::result::Result::Err(error) => sink.early_error(error),
                    })
                } else {
                    quote!(sink.send(#call).await)
                };
                quote_spanned! {method.span()=>
                    move |ctx: #krate::Context, req: #req_ty, sink| async move {
                        let _ = (&ctx, &req);
                        #send
                    }
                }
            }
        };
        let helper = match self.stream {
            None => quote!(unary),
            Some(_) => quote!(streaming),
        };
        quote! {
            #index => #private::#helper(request, #codecs, #handler),
        }
    }

    /// The JSON Schemas of the request, response and error types, each
    /// `None` when the type does not implement `JsonSchema`.
    fn schemas(&self) -> TokenStream {
        let private = self.private;
        let req = self.request_ty();
        let (ok, err) = (self.ok, self.err);
        quote! {
            [
                (&#private::SchemaOf::<#req>::new()).schema(),
                (&#private::SchemaOf::<#ok>::new()).schema(),
                (&#private::SchemaOf::<#err>::new()).schema(),
            ]
        }
    }

    /// The fan-out method of a unary endpoint; a stream has none.
    fn fan_out_method(&self) -> Option<TokenStream> {
        if self.stream.is_some() {
            return None;
        }
        let (krate, private) = (self.krate, self.private);
        let (index, method, ok, err) = (self.index, self.method(), self.ok, self.err);
        let codecs = self.codecs();
        let (param, arg) = match self.request {
            Some(ty) if self.fallback => (quote!(, _: #ty), quote!()),
            Some(ty) => (quote!(, req: #ty), quote!(&req)),
            None => (quote!(), quote!(&())),
        };
        let output = quote!(::core::result::Result<#krate::Answers<#ok, #err>, #krate::CallError<#err>>);
        let wire = &self.wire;
        let doc = format!("Calls `{wire}` on every instance; see the client's `fan_out`.");
        Some(match self.fallback {
            true => quote! {
                #[doc = #doc]
                pub fn #method(&self #param) -> #output {
                    ::core::unreachable!("the component did not compile")
                }
            },
            false => quote! {
                #[doc = #doc]
                pub fn #method(&self #param) -> #output {
                    #private::fan_out(&self.core, #index, #arg, #codecs, self.options)
                }
            },
        })
    }

    fn client_method(&self) -> TokenStream {
        let (krate, private) = (self.krate, self.private);
        let index = self.index;
        let method = self.method();
        let (ok, err) = (self.ok, self.err);
        let codecs = self.codecs();
        let docs = self.ep.attrs.iter().filter(|a| a.path().is_ident("doc"));
        let (param, arg) = match self.request {
            Some(ty) if self.fallback => (quote!(, _: #ty), quote!()),
            Some(ty) => (quote!(, req: #ty), quote!(&req)),
            None => (quote!(), quote!(&())),
        };
        if self.fallback {
            let output = match self.stream {
                None => quote!(#ok),
                Some(_) => quote!(#krate::ResponseStream<#ok, #err>),
            };
            return quote! {
                #(#docs)*
                pub async fn #method(&self #param) -> ::core::result::Result<#output, #krate::CallError<#err>> {
                    ::core::unreachable!("the component did not compile")
                }
            };
        }
        match self.stream {
            None => quote! {
                #(#docs)*
                pub async fn #method(&self #param) -> ::core::result::Result<#ok, #krate::CallError<#err>> {
                    #private::call(&self.core, #index, #arg, #codecs).await
                }
            },
            Some(_) => quote! {
                #(#docs)*
                pub async fn #method(&self #param)
                    -> ::core::result::Result<#krate::ResponseStream<#ok, #err>, #krate::CallError<#err>>
                {
                    #private::call_stream(&self.core, #index, #arg, #codecs).await
                }
            },
        }
    }
}

/// `tokens` with every span set to `span`: a path interpolated into
/// `quote_spanned!` keeps its own spans, and an error on the call would
/// then point at the attribute rather than at the user's type.
fn respanned(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(g) = &tree {
                let mut group = proc_macro2::Group::new(g.delimiter(), respanned(&g.stream(), span));
                group.set_span(span);
                tree = proc_macro2::TokenTree::Group(group);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// A type as the user wrote it, for descriptors and rustdoc.
fn tokens_text(ty: &Type) -> String {
    let s = quote!(#ty).to_string();
    s.replace(" < ", "<")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace(" :: ", "::")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn names_of(items: &[syn::ImplItem]) -> BTreeSet<String> {
        items
            .iter()
            .filter_map(|item| match item {
                syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
                syn::ImplItem::Const(c) => Some(c.ident.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_reserved_names_are_exactly_what_is_generated() {
        let args = quote!(namespace = "ns");
        let input = quote! {
            impl Tok {
                #[endpoint]
                async fn encode(&self) -> Result<u32, E> { Ok(1) }
                #[endpoint]
                async fn decode(&self) -> Result<u32, E> { Ok(1) }
            }
        };
        let file: syn::File = syn::parse2(component(args, input)).expect("the expansion parses");
        let mut type_items = BTreeSet::new();
        let mut client_methods = BTreeSet::new();
        let mut fan_out_methods = BTreeSet::new();
        let mut derived = BTreeSet::new();
        for item in &file.items {
            match item {
                Item::Impl(i) if i.trait_.is_none() => {
                    let ty = &i.self_ty;
                    let names = names_of(&i.items);
                    if quote!(#ty).to_string() == "TokClient" {
                        client_methods.extend(names);
                    } else if quote!(#ty).to_string() == "TokFanOut" {
                        fan_out_methods.extend(names);
                    } else {
                        type_items.extend(names);
                    }
                }
                Item::Struct(st) if st.ident == "TokClient" => {
                    for attr in &st.attrs {
                        if attr.path().is_ident("derive") {
                            attr.parse_nested_meta(|m| {
                                derived.insert(m.path.get_ident().unwrap().to_string());
                                Ok(())
                            })
                            .unwrap();
                        }
                    }
                }
                _ => {}
            }
        }
        let endpoints = BTreeSet::from(["encode".to_string(), "decode".to_string()]);
        // The user's own impl block comes back as it was, with its methods.
        let generated_on_type: BTreeSet<String> = type_items.difference(&endpoints).cloned().collect();
        let expected_on_type: BTreeSet<String> = TYPE_ITEMS
            .iter()
            .map(|s| s.to_string())
            .chain(["ENCODE_SUBJECT".to_string(), "DECODE_SUBJECT".to_string()])
            .collect();
        assert_eq!(generated_on_type, expected_on_type);
        assert_eq!(derived, BTreeSet::from(["Clone".to_string(), "Debug".to_string()]));
        let own: BTreeSet<String> = client_methods.difference(&endpoints).cloned().collect();
        let expected_client: BTreeSet<String> =
            CLIENT_METHODS.iter().filter(|m| !["clone", "fmt"].contains(m)).map(|s| s.to_string()).collect();
        assert_eq!(own, expected_client);
        assert!(client_methods.is_superset(&endpoints));
        assert_eq!(fan_out_methods, endpoints, "the fan-out handle has the endpoints' methods alone");
    }
}
