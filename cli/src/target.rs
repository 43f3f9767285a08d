//! Names on the command line: `NS/COMPONENT` and `NS/COMPONENT/ENDPOINT`,
//! checked by the same rules as the macros apply, so that a typo is told
//! apart from a component that is not running.

use rotor_names::{service_name, validate_component, validate_endpoint, validate_namespace};

use crate::Failure;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentName {
    pub namespace: String,
    pub component: String,
}

impl ComponentName {
    pub fn service(&self) -> String {
        service_name(&self.namespace, &self.component)
    }

    pub fn key_prefix(&self) -> String {
        rotor_names::component_key_prefix(&self.namespace, &self.component)
    }
}

impl std::fmt::Display for ComponentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.component)
    }
}

fn checked(result: Result<(), rotor_names::NameError>) -> Result<(), Failure> {
    result.map_err(|e| Failure { code: 2, ..Failure::new(e.to_string()) })
}

fn usage(text: &str, shape: &str) -> Failure {
    Failure { code: 2, ..Failure::new(format!("{text:?} is not {shape}")) }
}

pub fn namespace(text: &str) -> Result<String, Failure> {
    checked(validate_namespace(text))?;
    Ok(text.to_string())
}

pub fn component(text: &str) -> Result<ComponentName, Failure> {
    match text.split('/').collect::<Vec<_>>()[..] {
        [namespace, component] => parts(namespace, component),
        _ => Err(usage(text, "NAMESPACE/COMPONENT, such as hello/greeter")),
    }
}

pub fn endpoint(text: &str) -> Result<(ComponentName, String), Failure> {
    match text.split('/').collect::<Vec<_>>()[..] {
        [namespace, component, endpoint] => {
            let component = parts(namespace, component)?;
            checked(validate_endpoint(endpoint))?;
            Ok((component, endpoint.to_string()))
        }
        _ => Err(usage(text, "NAMESPACE/COMPONENT/ENDPOINT, such as hello/greeter/hello")),
    }
}

fn parts(namespace: &str, component: &str) -> Result<ComponentName, Failure> {
    checked(validate_namespace(namespace))?;
    checked(validate_component(component))?;
    Ok(ComponentName { namespace: namespace.into(), component: component.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_slashes_and_keep_dotted_namespaces() {
        let c = component("llm.prod/tokenizer").unwrap();
        assert_eq!((c.namespace.as_str(), c.component.as_str()), ("llm.prod", "tokenizer"));
        assert_eq!(c.service(), "llm_prod_tokenizer");
        let (c, e) = endpoint("hello/greeter/hello").unwrap();
        assert_eq!((c.to_string(), e.as_str()), ("hello/greeter".to_string(), "hello"));
    }

    #[test]
    fn malformed_names_are_usage_errors() {
        for bad in ["hello", "hello/greeter/hello"] {
            assert_eq!(component(bad).unwrap_err().code, 2, "{bad}");
        }
        for bad in ["hello/greeter", "a/b/c/d", "hello/Greeter/hello"] {
            assert_eq!(endpoint(bad).unwrap_err().code, 2, "{bad}");
        }
    }
}
