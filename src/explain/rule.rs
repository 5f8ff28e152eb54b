//! Which rule a registry name falls under, read the way Consul's DNS interface reads names
//! (right to left: the first keyword, or a label starting with `_`, is the kind; labels left
//! of it are the parts, right of it the locality), as `snapshot/build.rs` writes the names and
//! `dns/respond/forms.rs` answers the forms without names of their own.
//!
//! This only names the rule; the answer itself always comes from the responder.

/// The labels Consul takes as the kind of a name.
const KEYWORDS: [&str; 7] = [
    "service", "connect", "virtual", "ingress", "node", "query", "addr",
];

/// What a name under the registry domain asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryRule {
    /// `service`, `tag`, `rfc2782`, `node`, `addr`, `apex`, `locality` (an empty
    /// non-terminal such as `dc1.dc.consul`) or `other` (no such form: the name servers' own names, or NXDOMAIN).
    pub rule: &'static str,
    /// The name form: `plain`, `dc-label` (`<dc>.dc` locality) or `rfc2782-without-service`.
    pub form: &'static str,
    /// The service asked for (lower case, without `_`).
    pub service: Option<String>,
    /// The tag the answers are filtered by (`None` for `_tcp`, which filters nothing).
    pub tag: Option<String>,
    /// The node asked for.
    pub node: Option<String>,
    /// The datacenter label, when the name has one.
    pub datacenter: Option<String>,
}

/// The rule of a name whose labels below the registry domain are `labels` (left to right,
/// lower case).
pub fn classify(labels: &[String]) -> RegistryRule {
    let rule = |rule| RegistryRule {
        rule,
        form: "plain",
        ..RegistryRule::default()
    };
    let kind = labels
        .iter()
        .rposition(|label| KEYWORDS.contains(&label.as_str()) || label.starts_with('_'));
    let Some(kind) = kind else {
        return match labels {
            [] => rule("apex"),
            [only] if only == "dc" => rule("locality"),
            [datacenter, dc] if dc == "dc" => RegistryRule {
                datacenter: Some(datacenter.clone()),
                form: "dc-label",
                ..rule("locality")
            },
            _ => rule("other"),
        };
    };
    let kind_label = labels[kind].as_str();
    let parts = &labels[..kind];
    if kind_label == "addr" {
        return match parts {
            [] => rule("locality"),
            [_hex] => rule("addr"),
            _ => rule("other"),
        };
    }
    let shortcut = !KEYWORDS.contains(&kind_label);
    let (datacenter, dc_label) = match &labels[kind + 1..] {
        [] => (None, false),
        [datacenter] => (Some(datacenter.clone()), false),
        [datacenter, dc] if dc == "dc" => (Some(datacenter.clone()), true),
        _ => return rule("other"),
    };
    let form = match (shortcut, dc_label) {
        (true, _) => "rfc2782-without-service",
        (false, true) => "dc-label",
        (false, false) => "plain",
    };
    let base = RegistryRule {
        rule: "other",
        form,
        datacenter,
        ..RegistryRule::default()
    };
    let srv = |service: &str, tag: &str| RegistryRule {
        rule: "rfc2782",
        service: Some(service[1..].to_string()),
        tag: (tag != "_tcp").then(|| tag[1..].to_string()),
        ..base.clone()
    };
    if shortcut {
        return match labels[..=kind] {
            [ref service, ref tag] if service.starts_with('_') => srv(service, tag),
            _ => base,
        };
    }
    match (kind_label, parts) {
        ("service", [service, tag]) if service.starts_with('_') && tag.starts_with('_') => {
            srv(service, tag)
        }
        ("service", [service]) => RegistryRule {
            rule: "service",
            service: Some(service.clone()),
            ..base
        },
        ("service", [tag, service]) => RegistryRule {
            rule: "tag",
            service: Some(service.clone()),
            tag: Some(tag.clone()),
            ..base
        },
        ("node", [node]) => RegistryRule {
            rule: "node",
            node: Some(node.clone()),
            ..base
        },
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(name: &str) -> (&'static str, &'static str, Option<String>, Option<String>) {
        let labels: Vec<String> = if name.is_empty() {
            Vec::new()
        } else {
            name.split('.').map(str::to_string).collect()
        };
        let rule = classify(&labels);
        (rule.rule, rule.form, rule.service, rule.tag)
    }

    #[test]
    fn every_form_names_its_rule() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(of("web.service"), ("service", "plain", some("web"), None));
        assert_eq!(
            of("web.service.dc1"),
            ("service", "plain", some("web"), None)
        );
        assert_eq!(
            of("web.service.dc1.dc"),
            ("service", "dc-label", some("web"), None)
        );
        assert_eq!(
            of("v1.web.service"),
            ("tag", "plain", some("web"), some("v1"))
        );
        assert_eq!(
            of("_web._tcp.service"),
            ("rfc2782", "plain", some("web"), None)
        );
        assert_eq!(
            of("_web._v1.service.dc1"),
            ("rfc2782", "plain", some("web"), some("v1"))
        );
        assert_eq!(
            of("_web._tcp"),
            ("rfc2782", "rfc2782-without-service", some("web"), None)
        );
        assert_eq!(of("n1.node").0, "node");
        assert_eq!(of("0a000001.addr").0, "addr");
        assert_eq!(of("").0, "apex");
        assert_eq!(of("dc1.dc").0, "locality");
        assert_eq!(of("web.query").0, "other");
        assert_eq!(of("a.b.c.service").0, "other");
        assert_eq!(of("ns1").0, "other");
    }
}
