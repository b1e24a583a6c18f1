//! The dependency rule, checked on the resolve graph of `cargo metadata`:
//! domain ← ports ← application; adapters beside application; only `strata-wiring` depends on
//! adapters (the binaries and the tools only in their tests), and nothing below the binaries
//! depends on `strata-wiring`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use serde_json::Value;

use super::Findings;
use crate::process::cargo;

const DOMAIN: &str = "strata-domain";
const PORTS: &str = "strata-ports";
const APPLICATION: &str = "strata-application";
const ADAPTER_PREFIX: &str = "strata-adapters-";
/// The one package that names adapters: it wires them for both binaries.
const WIRING: &str = "strata-wiring";

/// Workspace packages that use the wiring, and may use adapters in their tests (as
/// dev-dependencies): the binaries, the end-to-end tests, the tools, and the examples (services
/// outside Strata, whose tests run Strata's adapters to produce what they consume).
const ABOVE_THE_WIRING: &[&str] = &[
    "strata-web",
    "strata-projector",
    "strata-tests",
    "xtask",
    "strata-example-order-totals",
];

/// Whether the pure domain may not depend on this crate: async runtimes, IO and drivers.
fn is_infrastructure(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "tokio",
        "sqlx",
        "axum",
        "hyper",
        "reqwest",
        "elasticsearch",
        "tokio-postgres",
        "async-trait",
    ];
    EXACT.contains(&name) || name.starts_with("sqlx-") || name.starts_with("deadpool")
}

fn is_adapter(name: &str) -> bool {
    name.starts_with(ADAPTER_PREFIX)
}

/// Runs `cargo metadata` and checks its resolve graph.
pub fn check(root: &Path) -> anyhow::Result<Findings> {
    let output = cargo(root)
        .args(["metadata", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("could not run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")?;
    Ok(check_graph(&Graph::from_metadata(&metadata)?))
}

/// The kinds of a dependency edge, as `cargo metadata` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Dev,
    Build,
}

/// Which edges a walk follows from its starting package; beyond it, only normal edges count,
/// since a dependency's own dev and build dependencies are not part of what it links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstHop {
    NormalOnly,
    AnyKind,
}

/// Package names and dependency edges of a resolved workspace.
#[derive(Debug)]
pub struct Graph {
    names: HashMap<String, String>,
    edges: HashMap<String, Vec<(String, Vec<Kind>)>>,
    members: Vec<String>,
}

impl Graph {
    /// Reads `packages`, `workspace_members` and `resolve.nodes` of `cargo metadata` output.
    pub fn from_metadata(metadata: &Value) -> anyhow::Result<Self> {
        let mut names = HashMap::new();
        for package in array(metadata, "packages")? {
            names.insert(string(package, "id")?, string(package, "name")?);
        }
        let members = array(metadata, "workspace_members")?
            .iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .context("a workspace member id is not a string")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let resolve = metadata
            .get("resolve")
            .context("cargo metadata has no resolve graph")?;
        let mut edges = HashMap::new();
        for node in array(resolve, "nodes")? {
            let mut deps = Vec::new();
            for dep in array(node, "deps")? {
                deps.push((string(dep, "pkg")?, kinds(dep)));
            }
            edges.insert(string(node, "id")?, deps);
        }
        Ok(Self {
            names,
            edges,
            members,
        })
    }

    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    fn member(&self, name: &str) -> Option<&str> {
        self.members
            .iter()
            .map(String::as_str)
            .find(|id| self.name(id) == name)
    }

    /// Everything `start` depends on, each with the chain of package names that leads to it.
    fn reachable(&self, start: &str, first_hop: FirstHop) -> BTreeMap<String, Vec<String>> {
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(id) = queue.pop_front() {
            for (dep, kinds) in self.edges.get(id).into_iter().flatten() {
                let follow = kinds.contains(&Kind::Normal)
                    || (id == start && first_hop == FirstHop::AnyKind);
                if follow && dep != start && !parent.contains_key(dep.as_str()) {
                    parent.insert(dep, id);
                    queue.push_back(dep);
                }
            }
        }
        parent
            .keys()
            .map(|&id| {
                let mut chain = vec![self.name(id).to_owned()];
                let mut at = id;
                while let Some(&up) = parent.get(at) {
                    chain.push(self.name(up).to_owned());
                    at = up;
                }
                chain.reverse();
                (id.to_owned(), chain)
            })
            .collect()
    }
}

/// One rule: what `package` may not reach, and why.
fn forbid(
    findings: &mut Findings,
    graph: &Graph,
    package: &str,
    first_hop: FirstHop,
    forbidden: impl Fn(&str) -> bool,
    why: &str,
) {
    let Some(id) = graph.member(package) else {
        return;
    };
    let mut offenders: Vec<(&str, &Vec<String>)> = Vec::new();
    let reachable = graph.reachable(id, first_hop);
    for (dep, chain) in &reachable {
        if forbidden(graph.name(dep)) {
            offenders.push((graph.name(dep), chain));
        }
    }
    offenders.sort();
    for (name, chain) in offenders {
        findings.problem(format!(
            "{package} must not depend on {name} ({why}); path: {}",
            chain.join(" -> ")
        ));
    }
}

/// One rule on `package`'s own normal dependencies (its dev-dependencies, and what its
/// dependencies depend on, are not checked): which it may not name.
fn forbid_normal_dependency(
    findings: &mut Findings,
    graph: &Graph,
    package: &str,
    forbidden: impl Fn(&str) -> bool,
    why: &str,
) {
    let Some(id) = graph.member(package) else {
        return;
    };
    let mut offenders: Vec<&str> = graph
        .edges
        .get(id)
        .into_iter()
        .flatten()
        .filter(|(dep, kinds)| kinds.contains(&Kind::Normal) && forbidden(graph.name(dep)))
        .map(|(dep, _)| graph.name(dep))
        .collect();
    offenders.sort_unstable();
    for name in offenders {
        findings.problem(format!(
            "{package} must not depend on {name} outside its tests ({why})"
        ));
    }
}

/// All the rules of the dependency graph.
pub fn check_graph(graph: &Graph) -> Findings {
    let mut findings = Findings::default();
    if graph.member(DOMAIN).is_none() {
        findings.problem(format!("workspace package {DOMAIN} not found"));
    }
    forbid(
        &mut findings,
        graph,
        DOMAIN,
        FirstHop::NormalOnly,
        is_infrastructure,
        "the domain is pure: no async runtime, IO or drivers",
    );
    forbid(
        &mut findings,
        graph,
        DOMAIN,
        FirstHop::AnyKind,
        |name| name == PORTS || name == APPLICATION,
        "the domain is the innermost layer",
    );
    forbid(
        &mut findings,
        graph,
        PORTS,
        FirstHop::AnyKind,
        |name| name == APPLICATION,
        "ports are defined for the application, not by it",
    );
    forbid(
        &mut findings,
        graph,
        PORTS,
        FirstHop::AnyKind,
        |name| name == DOMAIN,
        "ports carry the envelope, not the domain's types, so adapters never see the domain",
    );
    let mut members: Vec<&str> = graph.members.iter().map(|id| graph.name(id)).collect();
    members.sort_unstable();
    for package in members {
        if is_adapter(package) {
            forbid(
                &mut findings,
                graph,
                package,
                FirstHop::NormalOnly,
                |name| name == APPLICATION || (is_adapter(name) && name != package),
                "adapters implement ports and know neither the application nor each other",
            );
            forbid(
                &mut findings,
                graph,
                package,
                FirstHop::AnyKind,
                |name| name == WIRING,
                "the wiring names the adapters, not the other way round",
            );
        } else if ABOVE_THE_WIRING.contains(&package) {
            forbid_normal_dependency(
                &mut findings,
                graph,
                package,
                is_adapter,
                "only strata-wiring names adapters; binaries and tools use them in tests only",
            );
        } else if package != WIRING {
            forbid(
                &mut findings,
                graph,
                package,
                FirstHop::AnyKind,
                |name| is_adapter(name) || name == WIRING,
                "only strata-wiring uses adapters, and only the binaries, strata-tests and xtask \
                 use strata-wiring",
            );
        }
    }
    findings
}

fn array<'a>(value: &'a Value, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    value
        .get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("cargo metadata: `{key}` is not an array"))
}

fn string(value: &Value, key: &str) -> anyhow::Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("cargo metadata: `{key}` is not a string"))
}

/// The kinds of one `deps` entry; entries without `dep_kinds` (old cargo) count as normal.
fn kinds(dep: &Value) -> Vec<Kind> {
    let Some(dep_kinds) = dep.get("dep_kinds").and_then(Value::as_array) else {
        return vec![Kind::Normal];
    };
    dep_kinds
        .iter()
        .map(|kind| match kind.get("kind").and_then(Value::as_str) {
            Some("dev") => Kind::Dev,
            Some("build") => Kind::Build,
            _ => Kind::Normal,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A dependency of a fixture package: its name and kind (`None` is normal).
    type Dep = (&'static str, Option<&'static str>);
    /// A fixture package: its name and dependencies.
    type Package = (&'static str, &'static [Dep]);

    /// A small `cargo metadata` document; names starting `strata-`, and `xtask`, are members.
    fn metadata(packages: &[Package]) -> Value {
        let id = |name: &str| format!("path+file:///w#{name}@0.1.0");
        let members: Vec<String> = packages
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| name.starts_with("strata-") || *name == "xtask")
            .map(id)
            .collect();
        json!({
            "packages": packages.iter().map(|(name, _)| json!({"id": id(name), "name": name})).collect::<Vec<_>>(),
            "workspace_members": members,
            "resolve": {
                "nodes": packages.iter().map(|(name, deps)| json!({
                    "id": id(name),
                    "deps": deps.iter().map(|(dep, kind)| json!({
                        "name": dep.replace('-', "_"),
                        "pkg": id(dep),
                        "dep_kinds": [{"kind": kind, "target": null}],
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            },
        })
    }

    fn problems(packages: &[Package]) -> Vec<String> {
        check_graph(&Graph::from_metadata(&metadata(packages)).unwrap()).problems
    }

    const DEV: Option<&str> = Some("dev");

    fn healthy() -> Vec<Package> {
        vec![
            ("strata-domain", &[("thiserror", None), ("tokio", DEV)]),
            ("strata-ports", &[("async-trait", None)]),
            (
                "strata-application",
                &[("strata-ports", None), ("strata-domain", None)],
            ),
            (
                "strata-adapters-postgres",
                &[("strata-ports", None), ("sqlx", None)],
            ),
            (
                "strata-web",
                &[
                    ("strata-application", None),
                    ("strata-wiring", None),
                    ("strata-adapters-postgres", DEV),
                ],
            ),
            (
                "strata-wiring",
                &[
                    ("strata-application", None),
                    ("strata-adapters-postgres", None),
                ],
            ),
            (
                "strata-tests",
                &[
                    ("strata-web", DEV),
                    ("strata-wiring", DEV),
                    ("strata-adapters-postgres", DEV),
                ],
            ),
            ("xtask", &[("serde_json", None)]),
            ("thiserror", &[]),
            ("tokio", &[]),
            ("async-trait", &[]),
            ("sqlx", &[("sqlx-core", None)]),
            ("sqlx-core", &[("tokio", None)]),
            ("serde_json", &[]),
        ]
    }

    #[test]
    fn the_intended_architecture_passes() {
        assert_eq!(problems(&healthy()), Vec::<String>::new());
    }

    #[test]
    fn infrastructure_reached_through_a_normal_dependency_of_the_domain_is_named_with_its_path() {
        let mut packages = healthy();
        packages[0] = ("strata-domain", &[("helper", None)]);
        packages.push(("helper", &[("sqlx-core", None)]));

        let problems = problems(&packages);

        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("must not depend on sqlx-core"));
        assert!(problems[0].contains("strata-domain -> helper -> sqlx-core"));
        assert!(problems[1].contains("must not depend on tokio"));
    }

    #[test]
    fn dev_dependencies_of_dependencies_are_not_followed() {
        let mut packages = healthy();
        packages[0] = ("strata-domain", &[("helper", None)]);
        packages.push((
            "helper",
            &[("tokio", DEV), ("deadpool-postgres", Some("build"))],
        ));
        packages.push(("deadpool-postgres", &[]));
        assert_eq!(problems(&packages), Vec::<String>::new());
    }

    #[test]
    fn an_adapter_may_know_neither_the_application_nor_another_adapter() {
        let mut packages = healthy();
        packages[3] = (
            "strata-adapters-postgres",
            &[
                ("strata-application", None),
                ("strata-adapters-search", None),
            ],
        );
        packages.push(("strata-adapters-search", &[("strata-ports", None)]));

        let problems = problems(&packages);

        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("strata-adapters-postgres must not depend on strata-adapters-search")
        );
        assert!(
            problems[1]
                .starts_with("strata-adapters-postgres must not depend on strata-application")
        );
    }

    #[test]
    fn only_the_binaries_and_tools_may_use_adapters_even_as_dev_dependencies() {
        let mut packages = healthy();
        packages[2] = (
            "strata-application",
            &[("strata-ports", None), ("strata-adapters-postgres", DEV)],
        );
        let problems = problems(&packages);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("strata-application must not depend on strata-adapters-postgres")
        );
    }

    #[test]
    fn binaries_and_tools_may_use_adapters_in_their_tests_only() {
        let mut packages = healthy();
        packages[4] = (
            "strata-web",
            &[("strata-wiring", None), ("strata-adapters-postgres", None)],
        );
        packages[7] = ("xtask", &[("strata-adapters-postgres", None)]);

        let problems = problems(&packages);

        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with(
            "strata-web must not depend on strata-adapters-postgres outside its tests"
        ));
        assert!(
            problems[1]
                .starts_with("xtask must not depend on strata-adapters-postgres outside its tests")
        );
    }

    #[test]
    fn nothing_below_the_binaries_may_use_the_wiring_even_in_tests() {
        let mut packages = healthy();
        packages[2] = (
            "strata-application",
            &[("strata-ports", None), ("strata-wiring", DEV)],
        );
        packages[3] = (
            "strata-adapters-postgres",
            &[("strata-ports", None), ("strata-wiring", DEV)],
        );

        let problems = problems(&packages);

        for expected in [
            "strata-adapters-postgres must not depend on strata-wiring",
            "strata-application must not depend on strata-wiring",
            // Through the wiring, the application would reach an adapter too.
            "strata-application must not depend on strata-adapters-postgres",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected}: {problems:?}"
            );
        }
    }

    #[test]
    fn ports_may_know_neither_the_application_nor_the_domain_and_the_domain_may_not_know_ports() {
        let mut packages = healthy();
        packages[0] = ("strata-domain", &[("strata-ports", None)]);
        packages[1] = (
            "strata-ports",
            &[("strata-application", None), ("strata-domain", DEV)],
        );
        let problems = problems(&packages);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("strata-ports must not depend on strata-domain"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("strata-domain must not depend on strata-ports"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("strata-ports must not depend on strata-application"))
        );
    }

    #[test]
    fn a_missing_domain_package_is_reported() {
        let packages: Vec<_> = healthy()
            .into_iter()
            .filter(|(name, _)| *name != "strata-domain")
            .collect();
        assert!(
            problems(&packages)
                .iter()
                .any(|p| p.contains("strata-domain not found"))
        );
    }
}
