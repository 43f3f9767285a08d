//! Fully qualified `Result`, generic wire types, a raw identifier, two
//! components in one module, and a `pub` component in a module.

mod inner {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, thiserror::Error)]
    #[error("failed: {0}")]
    pub struct Failed(pub String);

    pub struct Store;

    #[rotor::component(namespace = "data")]
    impl Store {
        #[rotor::endpoint]
        pub async fn r#type(&self, keys: Vec<String>) -> std::result::Result<std::collections::BTreeMap<String, u8>, Failed> {
            Ok(keys.into_iter().map(|k| (k, 0)).collect())
        }

        #[rotor::endpoint]
        async fn maybe(&self, x: Option<(u8, String)>) -> core::result::Result<Option<u8>, Failed> {
            Ok(x.map(|(n, _)| n))
        }
    }

    pub struct Index;

    #[rotor::component(namespace = "data")]
    impl Index {
        #[rotor::endpoint]
        async fn maybe(&self) -> Result<(), Failed> {
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() {
    let rt = rotor::Runtime::embedded().await.unwrap();
    let _a = rt.serve(inner::Store).await.unwrap();
    let _b = rt.serve(inner::Index).await.unwrap();
    let store: inner::StoreClient = inner::Store::client(&rt).await.unwrap();
    let out = store.r#type(vec!["k".into()]).await.unwrap();
    assert_eq!(out.get("k"), Some(&0));
    assert_eq!(inner::Store::TYPE_SUBJECT, "data_store.type");
    assert_eq!(store.maybe(Some((3, "x".into()))).await.unwrap(), Some(3));
    inner::Index::client(&rt).await.unwrap().maybe().await.unwrap();
}
