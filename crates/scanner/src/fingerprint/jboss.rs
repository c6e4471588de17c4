//! WildFly and JBoss EAP (`java … -jar <home>/jboss-modules.jar …`): product name and version
//! from files under the server home, first hit wins:
//! 1. `<home>/version.txt` (`Red Hat JBoss Enterprise Application Platform - Version 7.4.19.GA`);
//! 2. the product module's exploded manifest (`JBoss-Product-Release-Name`/`-Version`, WildFly ≤ 30);
//! 3. the `wildfly-feature-pack-product-conf*.jar` manifest in the product module (WildFly ≥ 31).

use runtime_info::RuntimeComponent;

use super::jar::{Jar, Manifest, MAX_MANIFEST};
use super::paths::join_path;
use super::Root;

const PRODUCT_MODULE: &str = "modules/system/layers/base/org/jboss/as/product/main";
const MAX_VERSION_TXT: u64 = 64 * 1024;
/// Most feature-pack jars tried (there is normally exactly one).
const MAX_PRODUCT_JARS: usize = 8;

/// Name and version of the server installed at `home` (a container path).
pub fn detect(root: &Root, home: &str) -> Option<RuntimeComponent> {
    from_version_txt(root, home)
        .or_else(|| from_product_manifest(root, home))
        .or_else(|| from_feature_pack_jar(root, home))
}

fn from_version_txt(root: &Root, home: &str) -> Option<RuntimeComponent> {
    let text = root
        .read_string_bounded(&join_path(home, "version.txt"), MAX_VERSION_TXT)
        .ok()?;
    let parts: Vec<&str> = text.split("- Version").collect();
    let [name, version] = parts.as_slice() else {
        return None;
    };
    component(name, version)
}

fn from_product_manifest(root: &Root, home: &str) -> Option<RuntimeComponent> {
    let path = join_path(home, &format!("{PRODUCT_MODULE}/dir/META-INF/MANIFEST.MF"));
    let text = root.read_string_bounded(&path, MAX_MANIFEST).ok()?;
    from_manifest(&Manifest::parse(&text))
}

fn from_feature_pack_jar(root: &Root, home: &str) -> Option<RuntimeComponent> {
    let dir = join_path(home, PRODUCT_MODULE);
    let names = root.list_dir(&dir).ok()?;
    names
        .iter()
        .filter(|n| n.starts_with("wildfly-feature-pack-product-conf") && n.ends_with(".jar"))
        .take(MAX_PRODUCT_JARS)
        .find_map(|name| {
            let path = join_path(&dir, name);
            let manifest = Jar::open(root, &path)
                .and_then(|jar| jar.manifest())
                .map_err(|e| tracing::debug!(error = %e, "cannot read product jar"))
                .ok()??;
            from_manifest(&manifest)
        })
}

/// Unlike the reference, a manifest without a product name yields nothing (not an `""` entry).
fn from_manifest(manifest: &Manifest) -> Option<RuntimeComponent> {
    component(
        manifest.get("JBoss-Product-Release-Name")?,
        manifest
            .get("JBoss-Product-Release-Version")
            .unwrap_or_default(),
    )
}

fn component(name: &str, version: &str) -> Option<RuntimeComponent> {
    let name = name.trim();
    (!name.is_empty()).then(|| RuntimeComponent {
        name: name.to_owned(),
        version: version.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::jar::tests::build_jar;
    use super::*;
    use crate::fingerprint::testing::root_with;

    fn rc(name: &str, version: &str) -> Option<RuntimeComponent> {
        Some(RuntimeComponent {
            name: name.into(),
            version: version.into(),
        })
    }

    const MODULE_MANIFEST: &str =
        "/opt/jboss/wildfly/modules/system/layers/base/org/jboss/as/product/main/dir/META-INF/MANIFEST.MF";

    #[test]
    fn version_txt_wins() {
        let (_d, root) = root_with(&[
            (
                "/opt/eap/version.txt",
                b"Red Hat JBoss Enterprise Application Platform - Version 7.4.19.GA\n",
            ),
            (
                "/opt/eap/modules/system/layers/base/org/jboss/as/product/main/dir/META-INF/MANIFEST.MF",
                b"JBoss-Product-Release-Name: JBoss EAP\nJBoss-Product-Release-Version: 7.4.19.GA\n",
            ),
        ]);
        assert_eq!(
            detect(&root, "/opt/eap"),
            rc("Red Hat JBoss Enterprise Application Platform", "7.4.19.GA")
        );
        assert_eq!(detect(&root, "/opt/eap/"), detect(&root, "/opt/eap"));
    }

    #[test]
    fn eap8_update_versions_and_malformed_version_txt() {
        let (_d, root) = root_with(&[
            (
                "/opt/eap/version.txt",
                b"Red Hat JBoss Enterprise Application Platform - Version 8.0 Update 6.1\r\n",
            ),
            ("/opt/bad/version.txt", b"no separator here\n"),
            ("/opt/two/version.txt", b"A - Version 1 - Version 2\n"),
            ("/opt/empty/version.txt", b" - Version 1\n"),
        ]);
        assert_eq!(
            detect(&root, "/opt/eap"),
            rc(
                "Red Hat JBoss Enterprise Application Platform",
                "8.0 Update 6.1"
            )
        );
        for home in ["/opt/bad", "/opt/two", "/opt/empty", "/opt/none"] {
            assert_eq!(detect(&root, home), None, "{home}");
        }
    }

    #[test]
    fn wildfly_30_product_module_manifest() {
        let (_d, root) = root_with(&[(
            MODULE_MANIFEST,
            b"Manifest-Version: 1.0\r\nJBoss-Product-Release-Name: WildFly Full\r\nJBoss-Product-Release-Version: 30.0.1.Final\r\n",
        )]);
        assert_eq!(
            detect(&root, "/opt/jboss/wildfly"),
            rc("WildFly Full", "30.0.1.Final")
        );
    }

    #[test]
    fn manifest_without_product_name_is_not_an_empty_entry() {
        let (_d, root) = root_with(&[(MODULE_MANIFEST, b"Manifest-Version: 1.0\r\n")]);
        assert_eq!(detect(&root, "/opt/jboss/wildfly"), None);
    }

    #[test]
    fn wildfly_31_plus_feature_pack_jar() {
        let conf = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Manifest-Version: 1.0\r\nJBoss-Product-Release-Name: WildFly\r\nJBoss-Product-Release-Version: 34.0.0.Final\r\n",
            true,
        )]);
        let dir = "/opt/jboss/wildfly/modules/system/layers/base/org/jboss/as/product/main";
        let (_d, root) = root_with(&[
            (&format!("{dir}/module.xml"), b"<module/>"),
            (
                &format!("{dir}/wildfly-feature-pack-product-conf-34.0.0.Final.jar"),
                &conf,
            ),
        ]);
        assert_eq!(
            detect(&root, "/opt/jboss/wildfly"),
            rc("WildFly", "34.0.0.Final")
        );

        // A junk jar with the right name is skipped without error.
        let (_d, root) = root_with(&[
            (
                &format!("{dir}/wildfly-feature-pack-product-conf-0.jar"),
                b"junk",
            ),
            (
                &format!("{dir}/wildfly-feature-pack-product-conf-34.0.0.Final.jar"),
                &conf,
            ),
        ]);
        assert_eq!(
            detect(&root, "/opt/jboss/wildfly"),
            rc("WildFly", "34.0.0.Final")
        );
    }
}
