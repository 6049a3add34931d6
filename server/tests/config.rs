//! Leptos.toml (read by the server) and Cargo.toml (read by cargo-leptos) must
//! describe the same site, or the server would ask for files that were never
//! built, or listen where nobody looks.

use std::path::{Path, PathBuf};

use server::Config;

/// A file of the workspace. Cargo runs a test from its package's directory;
/// a path compiled in (`env!("CARGO_MANIFEST_DIR")`) would name the clone the
/// binary was first built in, which a shared target directory may reuse.
fn workspace_file(name: &str) -> PathBuf {
    Path::new("..").join(name)
}

fn cargo_leptos_metadata() -> toml::Table {
    let text = std::fs::read_to_string(workspace_file("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let projects = manifest["workspace"]["metadata"]["leptos"]
        .as_array()
        .unwrap();
    assert_eq!(projects.len(), 1, "one cargo-leptos project");
    projects[0].as_table().unwrap().clone()
}

#[test]
fn leptos_toml_and_cargo_toml_agree() {
    let config = Config::load(&workspace_file("Leptos.toml"), |_| None).unwrap();
    let build = cargo_leptos_metadata();
    let text = |key: &str| build[key].as_str().unwrap().to_owned();

    assert_eq!(config.site.addr.to_string(), text("site-addr"));
    assert_eq!(config.site.root, text("site-root"));
    assert_eq!(config.site.pkg_dir, text("site-pkg-dir"));
    assert_eq!(config.site.output_name, text("name"));
    assert_eq!(
        i64::from(config.site.reload_port),
        build["reload-port"].as_integer().unwrap()
    );
}

#[test]
fn cargo_config_names_the_same_output() {
    let text = std::fs::read_to_string(workspace_file(".cargo/config.toml")).unwrap();
    let cargo_config: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        cargo_config["env"]["LEPTOS_OUTPUT_NAME"].as_str().unwrap(),
        cargo_leptos_metadata()["name"].as_str().unwrap()
    );
}
