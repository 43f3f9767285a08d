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
/// Arguments: `namespace = "..."` (required), `name = "..."` (default: the
/// type name in snake case), `labels(key = "value", ..)` (constant metric
/// labels), and the flag `static` (no discovery registration: callers reach
/// the component through its queue-group subject alone).
#[proc_macro_attribute]
pub fn component(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::component(args.into(), input.into()).into()
}

/// Marks a method of a `#[component]` impl block as a network endpoint.
///
/// Takes an optional `name = "..."` (default: the method name). It has no
/// effect on its own: `#[component]` reads and removes it. Used anywhere
/// else, it is a compile error.
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
