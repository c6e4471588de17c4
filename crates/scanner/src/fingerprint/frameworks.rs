//! Java frameworks recognised by their main class, driven by the data table [`JAVA_FRAMEWORKS`]
//! (the counterpart of the reference's `config.toml`): a new framework is a table row. The
//! table is Rust, checked by the compiler and by a unit test: the privileged binary parses no
//! configuration file and carries no TOML parser.
//!
//! Versions come only from jar manifests read through the [`Root`]; nothing is executed.

use runtime_info::RuntimeComponent;

use super::jar::{Jar, Manifest, MAX_MANIFEST, MAX_NESTED_JAR};
use super::paths::{file_name, join_path, parent_dir};
use super::Root;

/// Most `Class-Path` manifest entries looked at per jar.
const MAX_CLASS_PATH_ENTRIES: usize = 4096;
/// Most jars opened while looking for the one that holds a main class.
/// (The `main_jar` hint normally makes it the first one.)
const MAX_JARS_OPENED: usize = 64;

/// Where a framework's version is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionFrom {
    /// The manifest of the executable jar (`-jar X`); for a classpath launch, the classpath jar
    /// (or exploded directory) selected by `main_jar`.
    ExecutableJar,
    /// The manifest of the jar that contains the main class's `.class` file, searched in the
    /// executable jar's `Class-Path` (or in the classpath); Quarkus fast-jar.
    ClassPathJar,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaFramework {
    /// Name reported in `runtimes` (exact, e.g. "Spring Boot").
    pub runtime_name: &'static str,
    /// Fully qualified main classes that identify the framework: the jar manifest's
    /// `Main-Class` for `java -jar X`, or the main-class argument for classpath launches.
    pub main_classes: &'static [&'static str],
    pub version_from: VersionFrom,
    /// The manifest attribute holding the version.
    pub version_manifest_entry: &'static str,
    /// Substring of the file name of the jar to use: selects the classpath element for
    /// `ExecutableJar`, and is tried first for `ClassPathJar`.
    pub main_jar: Option<&'static str>,
    /// (`ExecutableJar` only) when the manifest lacks the version entry, the
    /// `Implementation-Version` of the nested library jar `*/lib/<prefix><digit>…jar`
    /// (BOOT-INF/lib, WEB-INF/lib) is used.
    pub nested_jar_prefix: Option<&'static str>,
}

/// The frameworks recognised. Adding a framework is adding a row here.
pub const JAVA_FRAMEWORKS: &[JavaFramework] = &[
    JavaFramework {
        runtime_name: "Quarkus",
        main_classes: &[
            "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
            "io.quarkus.bootstrap.runner.AotQuarkusEntryPoint",
        ],
        version_from: VersionFrom::ClassPathJar,
        version_manifest_entry: "Implementation-Version",
        main_jar: Some("quarkus-bootstrap-runner"),
        nested_jar_prefix: None,
    },
    JavaFramework {
        runtime_name: "Spring Boot",
        main_classes: &[
            // Spring Boot < 3.2
            "org.springframework.boot.loader.JarLauncher",
            "org.springframework.boot.loader.WarLauncher",
            "org.springframework.boot.loader.PropertiesLauncher",
            // Spring Boot >= 3.2
            "org.springframework.boot.loader.launch.JarLauncher",
            "org.springframework.boot.loader.launch.WarLauncher",
            "org.springframework.boot.loader.launch.PropertiesLauncher",
        ],
        version_from: VersionFrom::ExecutableJar,
        version_manifest_entry: "Spring-Boot-Version",
        main_jar: None,
        nested_jar_prefix: Some("spring-boot-"),
    },
    JavaFramework {
        runtime_name: "Apache Tomcat",
        main_classes: &["org.apache.catalina.startup.Bootstrap"],
        version_from: VersionFrom::ExecutableJar,
        version_manifest_entry: "Implementation-Version",
        main_jar: Some("bootstrap.jar"),
        nested_jar_prefix: None,
    },
];

/// Why a row is unusable (checked by a unit test on [`JAVA_FRAMEWORKS`]).
pub fn check_row(f: &JavaFramework) -> Result<(), &'static str> {
    if f.runtime_name.trim().is_empty() {
        return Err("empty runtime_name");
    }
    if f.main_classes.is_empty() || f.main_classes.iter().any(|c| c.trim().is_empty()) {
        return Err("main_classes must list non-empty class names");
    }
    if f.version_manifest_entry.trim().is_empty() {
        return Err("empty version_manifest_entry");
    }
    if f.nested_jar_prefix.is_some() && f.version_from != VersionFrom::ExecutableJar {
        return Err("nested_jar_prefix needs VersionFrom::ExecutableJar");
    }
    Ok(())
}

/// The table.
pub fn java_frameworks() -> &'static [JavaFramework] {
    JAVA_FRAMEWORKS
}

fn rows_for<'a>(
    rows: &'a [JavaFramework],
    main_class: &'a str,
) -> impl Iterator<Item = &'a JavaFramework> + 'a {
    rows.iter()
        .filter(move |f| f.main_classes.contains(&main_class))
}

/// Whether some row is selected by `main_class` (saves classpath I/O for every other app).
pub fn is_known_main_class(main_class: &str) -> bool {
    rows_for(java_frameworks(), main_class).next().is_some()
}

/// `a.b.C` → `a/b/C.class`.
fn class_entry(main_class: &str) -> String {
    format!("{}.class", main_class.replace('.', "/"))
}

fn component(f: &JavaFramework, version: Option<String>) -> RuntimeComponent {
    RuntimeComponent {
        name: f.runtime_name.to_owned(),
        version: version.unwrap_or_default(),
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn open_jar(root: &Root, path: &str) -> Option<Jar> {
    Jar::open(root, path)
        .map_err(|e| tracing::debug!(error = %e, "cannot open jar"))
        .ok()
}

fn jar_manifest(jar: &Jar) -> Option<Manifest> {
    jar.manifest()
        .map_err(|e| tracing::debug!(error = %e, "cannot read jar manifest"))
        .ok()
        .flatten()
}

/// `java -jar <jar_path>`: the manifest's `Main-Class` selects the rows.
pub fn from_executable_jar(root: &Root, jar_path: &str) -> Vec<RuntimeComponent> {
    from_executable_jar_with(java_frameworks(), root, jar_path)
}

fn from_executable_jar_with(
    rows: &[JavaFramework],
    root: &Root,
    jar_path: &str,
) -> Vec<RuntimeComponent> {
    let Some(jar) = open_jar(root, jar_path) else {
        return Vec::new();
    };
    let Some(manifest) = jar_manifest(&jar) else {
        return Vec::new();
    };
    let Some(main_class) = manifest.get("Main-Class") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for f in rows_for(rows, main_class) {
        let version = match f.version_from {
            VersionFrom::ExecutableJar => non_empty(manifest.get(f.version_manifest_entry))
                .or_else(|| nested_version(&jar, f)),
            VersionFrom::ClassPathJar => {
                let dir = parent_dir(jar_path);
                let jars: Vec<String> = manifest_class_path(&manifest)
                    .map(|e| join_path(dir, e))
                    .collect();
                let mut budget = MAX_JARS_OPENED;
                version_of_jar_with_class(root, f, jars, main_class, &mut budget)
            }
        };
        found.push(component(f, version));
    }
    found
}

/// Classpath launch (`-cp …  <main class>`). `class_path` holds absolute paths, wildcards
/// already expanded.
pub fn from_class_path(
    root: &Root,
    class_path: &[String],
    main_class: &str,
) -> Vec<RuntimeComponent> {
    from_class_path_with(java_frameworks(), root, class_path, main_class)
}

fn from_class_path_with(
    rows: &[JavaFramework],
    root: &Root,
    class_path: &[String],
    main_class: &str,
) -> Vec<RuntimeComponent> {
    let mut found = Vec::new();
    // Each row iterates the classpath on its own (the reference shared one iterator).
    for f in rows_for(rows, main_class) {
        let version = match f.version_from {
            VersionFrom::ExecutableJar => {
                let candidates = class_path
                    .iter()
                    .filter(|e| f.main_jar.is_none_or(|mj| e.contains(mj)));
                let mut version = None;
                for element in candidates.take(MAX_JARS_OPENED) {
                    version = element_version(root, element, f);
                    // With `main-jar` the first matching element is the one, as in the reference.
                    if version.is_some() || f.main_jar.is_some() {
                        break;
                    }
                }
                version
            }
            VersionFrom::ClassPathJar => {
                let mut budget = MAX_JARS_OPENED;
                version_of_jar_with_class(root, f, class_path.to_vec(), main_class, &mut budget)
                    .or_else(|| {
                        // e.g. `-cp quarkus-run.jar`: the class sits in a jar of its Class-Path.
                        let mut nested = Vec::new();
                        for jar_path in class_path.iter().filter(|p| p.ends_with(".jar")).take(16) {
                            let Some(m) = open_jar(root, jar_path).and_then(|j| jar_manifest(&j))
                            else {
                                continue;
                            };
                            let dir = parent_dir(jar_path);
                            nested.extend(manifest_class_path(&m).map(|e| join_path(dir, e)));
                        }
                        version_of_jar_with_class(root, f, nested, main_class, &mut budget)
                    })
            }
        };
        found.push(component(f, version));
    }
    found
}

/// Version from one classpath element: a jar's manifest, or the manifest of an exploded
/// directory (`java -cp . org.springframework.boot.loader.launch.JarLauncher` in layered images).
fn element_version(root: &Root, element: &str, f: &JavaFramework) -> Option<String> {
    if root.is_dir(element) {
        let manifest_path = join_path(element, "META-INF/MANIFEST.MF");
        let text = root
            .read_string_bounded(&manifest_path, MAX_MANIFEST)
            .ok()?;
        let manifest = Manifest::parse(&text);
        return non_empty(manifest.get(f.version_manifest_entry))
            .or_else(|| exploded_nested_version(root, element, f));
    }
    let jar = open_jar(root, element)?;
    let manifest = jar_manifest(&jar)?;
    non_empty(manifest.get(f.version_manifest_entry)).or_else(|| nested_version(&jar, f))
}

fn manifest_class_path(manifest: &Manifest) -> impl Iterator<Item = &str> {
    manifest
        .get("Class-Path")
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter(|e| !e.ends_with('/'))
        .take(MAX_CLASS_PATH_ENTRIES)
}

/// The version in the manifest of the first jar of `jars` that contains `main_class`; jars
/// whose name contains the row's `main-jar` hint are tried first.
fn version_of_jar_with_class(
    root: &Root,
    f: &JavaFramework,
    mut jars: Vec<String>,
    main_class: &str,
    budget: &mut usize,
) -> Option<String> {
    if let Some(hint) = f.main_jar {
        // Stable: keeps the classpath order inside both groups.
        jars.sort_by_key(|p| !file_name(p).contains(hint));
    }
    let class = class_entry(main_class);
    for path in jars {
        if *budget == 0 {
            tracing::debug!(
                main_class,
                "gave up looking for the jar holding the main class"
            );
            return None;
        }
        *budget = budget.saturating_sub(1);
        let Some(jar) = open_jar(root, &path) else {
            continue;
        };
        match jar.contains(&class) {
            Ok(true) => {
                return jar_manifest(&jar).and_then(|m| non_empty(m.get(f.version_manifest_entry)))
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "cannot list jar"),
        }
    }
    None
}

/// `<prefix><digit>…jar`, e.g. `spring-boot-3.1.4.jar` but not `spring-boot-autoconfigure-3.1.4.jar`.
fn is_versioned_lib(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest.starts_with(|c: char| c.is_ascii_digit()) && rest.ends_with(".jar")
    })
}

/// Fallback for executable jars without the version entry: the nested library jar's
/// `Implementation-Version` (`BOOT-INF/lib/spring-boot-3.1.4.jar`).
fn nested_version(jar: &Jar, f: &JavaFramework) -> Option<String> {
    let prefix = f.nested_jar_prefix?;
    let entry = jar
        .scan(
            |name| {
                let (dir, file) = name.rsplit_once('/').unwrap_or(("", name));
                (dir.ends_with("/lib") || dir.ends_with("/lib-provided"))
                    && is_versioned_lib(file, prefix)
            },
            1,
        )
        .map_err(|e| tracing::debug!(error = %e, "cannot list jar"))
        .ok()?
        .pop()?;
    let nested = jar
        .nested(&entry, MAX_NESTED_JAR)
        .map_err(|e| tracing::debug!(error = %e, "cannot open nested jar"))
        .ok()?;
    non_empty(jar_manifest(&nested)?.get("Implementation-Version"))
}

/// Same fallback for an exploded application directory.
fn exploded_nested_version(root: &Root, dir: &str, f: &JavaFramework) -> Option<String> {
    let prefix = f.nested_jar_prefix?;
    for lib in ["BOOT-INF/lib", "WEB-INF/lib"] {
        let lib_dir = join_path(dir, lib);
        let Ok(names) = root.list_dir(&lib_dir) else {
            continue;
        };
        if let Some(name) = names.iter().find(|n| is_versioned_lib(n, prefix)) {
            let jar = open_jar(root, &join_path(&lib_dir, name))?;
            return non_empty(jar_manifest(&jar)?.get("Implementation-Version"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::jar::tests::build_jar;
    use super::*;
    use crate::fingerprint::testing::root_with;

    fn rc(name: &str, version: &str) -> RuntimeComponent {
        RuntimeComponent {
            name: name.into(),
            version: version.into(),
        }
    }

    /// A row as a test writes it: selected by `main_class`, version from `entry`.
    fn row(name: &'static str, main_classes: &'static [&'static str]) -> JavaFramework {
        JavaFramework {
            runtime_name: name,
            main_classes,
            version_from: VersionFrom::ExecutableJar,
            version_manifest_entry: "Implementation-Version",
            main_jar: None,
            nested_jar_prefix: None,
        }
    }

    #[test]
    fn table_covers_the_reference_rows() {
        let rows = JAVA_FRAMEWORKS;
        assert_eq!(rows.len(), 3);
        assert_eq!(java_frameworks(), rows);
        let names: Vec<&str> = rows.iter().map(|r| r.runtime_name).collect();
        assert_eq!(names, ["Quarkus", "Spring Boot", "Apache Tomcat"]);
        let main = |c: &str| {
            rows_for(rows, c)
                .map(|r| r.runtime_name)
                .collect::<Vec<_>>()
        };
        for c in [
            "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
            "io.quarkus.bootstrap.runner.AotQuarkusEntryPoint",
        ] {
            assert_eq!(main(c), ["Quarkus"]);
        }
        for c in [
            "org.springframework.boot.loader.JarLauncher",
            "org.springframework.boot.loader.WarLauncher",
            "org.springframework.boot.loader.PropertiesLauncher",
            "org.springframework.boot.loader.launch.JarLauncher",
            "org.springframework.boot.loader.launch.WarLauncher",
            "org.springframework.boot.loader.launch.PropertiesLauncher",
        ] {
            assert_eq!(main(c), ["Spring Boot"]);
        }
        assert_eq!(
            main("org.apache.catalina.startup.Bootstrap"),
            ["Apache Tomcat"]
        );
        assert!(main("com.example.Main").is_empty());
        let tomcat = &rows[2];
        assert_eq!(tomcat.main_jar, Some("bootstrap.jar"));
        assert_eq!(tomcat.version_manifest_entry, "Implementation-Version");
    }

    #[test]
    fn every_row_is_valid_and_invalid_rows_are_caught() {
        for f in JAVA_FRAMEWORKS {
            assert_eq!(check_row(f), Ok(()), "{}", f.runtime_name);
        }
        let good = row("X", &["a.B"]);
        assert_eq!(check_row(&good), Ok(()));
        let bad = [
            JavaFramework {
                runtime_name: " ",
                ..good.clone()
            },
            JavaFramework {
                main_classes: &[],
                ..good.clone()
            },
            JavaFramework {
                main_classes: &["a.B", ""],
                ..good.clone()
            },
            JavaFramework {
                version_manifest_entry: "",
                ..good.clone()
            },
            JavaFramework {
                version_from: VersionFrom::ClassPathJar,
                nested_jar_prefix: Some("x-"),
                ..good.clone()
            },
        ];
        for b in &bad {
            assert!(check_row(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn a_new_framework_is_just_a_row() {
        let rows = [JavaFramework {
            version_manifest_entry: "Micronaut-Version",
            ..row("Micronaut", &["io.micronaut.Runner"])
        }];
        let jar = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Main-Class: io.micronaut.Runner\nMicronaut-Version: 4.6.0\n",
            true,
        )]);
        let (_d, root) = root_with(&[("/app/app.jar", &jar)]);
        assert_eq!(
            from_executable_jar_with(&rows, &root, "/app/app.jar"),
            [rc("Micronaut", "4.6.0")]
        );
    }

    #[test]
    fn spring_boot_version_falls_back_to_the_nested_library() {
        let lib = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Implementation-Version: 2.7.18\n",
            true,
        )]);
        let autoconf = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Implementation-Version: 9.9.9\n",
            true,
        )]);
        let app = build_jar(&[
            (
                "META-INF/MANIFEST.MF",
                b"Main-Class: org.springframework.boot.loader.JarLauncher\n",
                true,
            ),
            (
                "BOOT-INF/lib/spring-boot-autoconfigure-2.7.18.jar",
                &autoconf,
                false,
            ),
            ("BOOT-INF/lib/spring-boot-2.7.18.jar", &lib, false),
        ]);
        let (_d, root) = root_with(&[("/app.jar", &app)]);
        assert_eq!(
            from_executable_jar(&root, "/app.jar"),
            [rc("Spring Boot", "2.7.18")]
        );
    }

    #[test]
    fn exploded_spring_boot_on_the_class_path() {
        let (_d, root) = root_with(&[
            (
                "/workspace/META-INF/MANIFEST.MF",
                b"Main-Class: org.springframework.boot.loader.launch.JarLauncher\r\nSpring-Boot-Version: 3.3.5\r\n",
            ),
            ("/workspace/BOOT-INF/classes/app/Main.class", b"x"),
        ]);
        assert_eq!(
            from_class_path(
                &root,
                &["/workspace".to_owned()],
                "org.springframework.boot.loader.launch.JarLauncher"
            ),
            [rc("Spring Boot", "3.3.5")]
        );
    }

    #[test]
    fn quarkus_on_the_class_path_directly_or_through_the_runner_jar() {
        let runner = build_jar(&[
            (
                "META-INF/MANIFEST.MF",
                b"Implementation-Version: 3.19.3\n",
                true,
            ),
            (
                "io/quarkus/bootstrap/runner/QuarkusEntryPoint.class",
                b"x",
                true,
            ),
        ]);
        let run = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Main-Class: io.quarkus.bootstrap.runner.QuarkusEntryPoint\nClass-Path: lib/boot/a.jar lib/boot/io.quarkus.quarkus-bootstrap-runner-3.19.3.jar\n",
            true,
        )]);
        let other = build_jar(&[("META-INF/MANIFEST.MF", b"Implementation-Version: 1\n", true)]);
        let (_d, root) = root_with(&[
            ("/q/quarkus-run.jar", &run),
            ("/q/lib/boot/a.jar", &other),
            (
                "/q/lib/boot/io.quarkus.quarkus-bootstrap-runner-3.19.3.jar",
                &runner,
            ),
        ]);
        let main = "io.quarkus.bootstrap.runner.QuarkusEntryPoint";
        let expected = [rc("Quarkus", "3.19.3")];
        let direct = [
            "/q/lib/boot/a.jar".to_owned(),
            "/q/lib/boot/io.quarkus.quarkus-bootstrap-runner-3.19.3.jar".to_owned(),
        ];
        assert_eq!(from_class_path(&root, &direct, main), expected);
        assert_eq!(
            from_class_path(&root, &["/q/quarkus-run.jar".to_owned()], main),
            expected
        );
        // Recognised by its main class even when the version cannot be found.
        assert_eq!(
            from_class_path(&root, &["/q/lib/boot/a.jar".to_owned()], main),
            [rc("Quarkus", "")]
        );
    }

    #[test]
    fn each_row_searches_the_class_path_on_its_own() {
        // Two rows selected by the same main class; the first row's jar comes after the
        // second row's in the classpath. A shared iterator (the reference) would lose row 2.
        let rows = [
            JavaFramework {
                main_jar: Some("late.jar"),
                ..row("Late", &["m.Main"])
            },
            JavaFramework {
                main_jar: Some("early.jar"),
                ..row("Early", &["m.Main"])
            },
        ];
        let early = build_jar(&[("META-INF/MANIFEST.MF", b"Implementation-Version: 1\n", true)]);
        let late = build_jar(&[("META-INF/MANIFEST.MF", b"Implementation-Version: 2\n", true)]);
        let (_d, root) = root_with(&[("/l/early.jar", &early), ("/l/late.jar", &late)]);
        let cp = ["/l/early.jar".to_owned(), "/l/late.jar".to_owned()];
        assert_eq!(
            from_class_path_with(&rows, &root, &cp, "m.Main"),
            [rc("Late", "2"), rc("Early", "1")]
        );
        assert!(is_known_main_class("org.apache.catalina.startup.Bootstrap"));
        assert!(!is_known_main_class("m.Main"));
    }

    #[test]
    fn unknown_main_class_or_unreadable_jar_gives_nothing() {
        let plain = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Main-Class: com.example.App\n",
            true,
        )]);
        let (_d, root) = root_with(&[("/plain.jar", &plain), ("/junk.jar", b"junk")]);
        assert!(from_executable_jar(&root, "/plain.jar").is_empty());
        assert!(from_executable_jar(&root, "/junk.jar").is_empty());
        assert!(from_executable_jar(&root, "/missing.jar").is_empty());
        assert!(from_class_path(&root, &["/plain.jar".to_owned()], "com.example.App").is_empty());
    }
}
