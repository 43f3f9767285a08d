//! The attribute macros of [Rotor](https://docs.rs/rotor): `#[component]` and
//! `#[endpoint]`. Use them through the `rotor` crate, which re-exports them.
//!
//! The expansion is parse ([`ast`], [`attr`]) -> validate ([`valid`]) ->
//! expand ([`expand`]). Every error carries the span of the token at fault;
//! all errors of an item are reported together; and on error the user's item
//! is emitted again beside the `compile_error!`s so that the rest of the crate
//! still type-checks and rust-analyzer keeps working.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

/// Turns an inherent `impl` block into a Rotor component.
///
/// ```text
/// #[rotor::component(namespace = "llm", name = "tokenizer", labels(model = "llama"))]
/// impl Tokenizer {
///     #[endpoint]
///     async fn encode(&self, req: EncodeRequest) -> Result<EncodeResponse, TokenizeError> { .. }
/// }
/// ```
///
/// Arguments:
///
/// - `namespace = "..."` (required): the component's namespace, such as
///   `llm` or `llm.prod`;
/// - `name = "..."`: its name (default: the type name in snake case);
/// - `labels(key = "value", ..)`: constant metric labels on every metric of
///   the component (not one Rotor sets itself, such as `endpoint`);
/// - `static`: no discovery registration; callers reach the component
///   through its queue-group subject alone;
/// - `stats = "method"`: a `&self` method whose `Serialize` value joins each
///   endpoint's figures in `$SRV.STATS` (under `data.extra`);
/// - `capabilities = "method"`: a `&self` method whose `Serialize` value
///   (what the component can do, the configuration it was built with) its
///   description publishes in `$SRV.INFO` and discovery;
/// - `crate = "path"`: where the runtime is, for a program that depends on
///   `rotor-runtime` (or a facade of its own) rather than `rotor`.
///
/// A method argument whose type is `Context` or `&Context` (by that name)
/// receives the request's context; the other argument, if any, is the
/// request.
///
/// On a trait, it declares a contract: every method is an `#[endpoint]`,
/// and the macro generates `{Trait}Client` (made by
/// `{Trait}Client::connect(&rt)`) and `{Trait}Server<T>`, which serves any
/// `T: Trait` (`rt.serve(TokenizerServer(value))`). A program that only
/// calls depends on the crate with the trait, not on the implementation.
///
/// ```text
/// #[rotor::component(namespace = "llm")]
/// pub trait Tokenizer {
///     #[endpoint]
///     async fn encode(&self, req: EncodeRequest) -> Result<EncodeResponse, TokenizeError>;
/// }
/// ```
#[proc_macro_attribute]
pub fn component(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::component(args.into(), input.into()).into()
}

/// Marks a method of a `#[component]` impl block as a network endpoint.
///
/// Arguments, all optional: `name = "..."`, the endpoint's wire name
/// (default: the method name); `idempotent = false` for an endpoint whose
/// calls must not run twice: such a call is never retried on another
/// instance (the default, `true`, retries a call whose instance is gone);
/// `stats = "method"`, this endpoint's `data` in `$SRV.STATS`; and
/// `max_request = 1_048_576`, the largest request payload it takes in
/// bytes, in place of the runtime's `ROTOR_MAX_REQUEST` (32 MiB): a larger
/// one is refused with `oversize` (413).
/// It has no effect on its own: `#[component]` reads and removes it. Used
/// anywhere else, it is a compile error.
#[proc_macro_attribute]
pub fn endpoint(_args: TokenStream, input: TokenStream) -> TokenStream {
    let input = TokenStream2::from(input);
    let err = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[endpoint]` only works on a method inside an impl block marked \
         `#[rotor::component(namespace = \"...\")]`",
    )
    .into_compile_error();
    quote!(#err #input).into()
}
