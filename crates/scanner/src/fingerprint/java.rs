//! Java: a JVM process, its version and vendor from the JDK `release` file, and the framework
//! or application server it runs, from the command line and jar manifests.
//!
//! Differences from the reference, on purpose (spec §5 item 14): the JDK home is also derived
//! from the real executable path (no `JAVA_HOME` needed); `--class-path`, `--class-path=`,
//! `-Djava.class.path=`, `CLASSPATH`, classpath wildcards and `@argfiles` are understood; the
//! main class is the first non-option argument, not any argument; each framework row searches
//! the classpath independently. Nothing from the container is executed.

use std::collections::VecDeque;

use runtime_info::RuntimeComponent;

use super::paths::{file_name, join_path, parent_dir};
use super::{frameworks, jboss, Detection, Detector, Recognise, Root};
use crate::process::ProcessFacts;

/// Largest JDK `release` file read (Temurin's is about 2.5 KB).
const MAX_RELEASE: u64 = 64 * 1024;
/// Largest `@argfile` read, and most argfiles expanded per command line.
const MAX_ARGFILE: u64 = 64 * 1024;
const MAX_ARGFILES: usize = 8;
/// Most arguments considered (after argfile expansion) and classpath elements kept.
const MAX_ARGS: usize = 4096;
const MAX_CLASS_PATH_ELEMENTS: usize = 1024;
/// Most `PATH` entries looked at.
const MAX_PATH_ENTRIES: usize = 64;

/// Launcher options whose value is the next argument.
const CLASS_PATH_OPTIONS: &[&str] = &["-cp", "-classpath", "--class-path"];
const OPTIONS_WITH_VALUE: &[&str] = &[
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--limit-modules",
    "--add-exports",
    "--add-reads",
    "--add-opens",
    "--patch-module",
    "--enable-native-access",
    "--source",
    "-d",
    "--describe-module",
];

/// In the registry: a JVM, recognised by the name of its thread or executable.
pub const DETECTOR: Detector = Detector {
    kind: "Java",
    recognise: Recognise::Name(is_jvm),
    detect,
};

/// Kind `Java` for a JVM process, with version, vendor and frameworks when files tell them.
pub fn detect(root: &Root, process: &ProcessFacts) -> Option<Detection> {
    if !is_jvm(process) {
        return None;
    }
    let mut detection = Detection {
        kind: "Java".to_owned(),
        ..Detection::default()
    };
    if let Some(release) = find_release(root, process) {
        detection.version = release.version;
        detection.implementer = release.implementor;
    }
    detection.runtimes = runtimes(root, process);
    Some(detection)
}

/// `comm` ends with `java` (as in the reference), or the executable is named `java`.
pub fn is_jvm(process: &ProcessFacts) -> bool {
    process.comm.ends_with("java") || real_exe(process).is_some_and(|e| file_name(e) == "java")
}

/// The executable path, without the kernel's ` (deleted)` mark for a replaced binary.
fn real_exe(process: &ProcessFacts) -> Option<&str> {
    let exe = process.exe.as_deref()?;
    Some(exe.strip_suffix(" (deleted)").unwrap_or(exe))
}

/// An argument path made absolute against the process's working directory.
fn absolute(process: &ProcessFacts, path: &str) -> Option<String> {
    if path.starts_with('/') {
        return Some(path.to_owned());
    }
    match process.cwd.as_deref() {
        Some(cwd) if cwd.starts_with('/') => Some(join_path(cwd, path)),
        _ => {
            tracing::debug!(path, "relative path but no working directory");
            None
        }
    }
}

fn env<'a>(process: &'a ProcessFacts, key: &str) -> Option<&'a str> {
    process
        .env
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

// ---- JDK release file -----------------------------------------------------------------------

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Release {
    version: String,
    implementor: String,
}

pub(crate) fn parse_release(text: &str) -> Release {
    let mut release = Release::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim().to_owned();
        match key.trim() {
            "JAVA_VERSION" => release.version = value,
            "IMPLEMENTOR" => release.implementor = value,
            _ => {}
        }
    }
    release
}

/// `release` files that may describe the running JDK, most trustworthy first.
fn release_candidates(root: &Root, process: &ProcessFacts) -> Vec<String> {
    let mut candidates = Vec::new();
    if let Some(home) = env(process, "JAVA_HOME").filter(|h| h.starts_with('/')) {
        candidates.push(join_path(home, "release"));
    }
    let mut from_java_binary = |java: &str| {
        // <home>/bin/java, or <home>/jre/bin/java of a Java 8 JDK.
        let home = parent_dir(parent_dir(java));
        if file_name(home) == "jre" {
            candidates.push(join_path(parent_dir(home), "release"));
        }
        candidates.push(join_path(home, "release"));
    };
    if let Some(exe) = real_exe(process).filter(|e| e.starts_with('/') && file_name(e) == "java") {
        from_java_binary(exe);
    }
    if let Some(path) = env(process, "PATH") {
        for dir in path
            .split(':')
            .filter(|d| d.starts_with('/'))
            .take(MAX_PATH_ENTRIES)
        {
            let java = join_path(dir, "java");
            if root.is_file(&java) {
                from_java_binary(&java);
            }
        }
    }
    candidates
}

fn find_release(root: &Root, process: &ProcessFacts) -> Option<Release> {
    release_candidates(root, process).iter().find_map(|path| {
        root.read_string_bounded(path, MAX_RELEASE)
            .map_err(|e| tracing::trace!(path, error = %e, "no JDK release file"))
            .ok()
            .map(|text| parse_release(&text))
    })
}

// ---- command line ---------------------------------------------------------------------------

/// What the `java` command line asks the launcher to run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Launch {
    /// `-jar X` (as written).
    jar: Option<String>,
    /// Last `-cp`/`-classpath`/`--class-path` value (the launcher keeps the last one).
    class_path: Option<String>,
    /// `-Dkey=value` options before the main class or jar.
    system_properties: Vec<(String, String)>,
    /// First non-option argument (not for `-jar` or module launches).
    main_class: Option<String>,
    /// Arguments after the main class or jar.
    app_args: Vec<String>,
}

impl Launch {
    fn property(&self, key: &str) -> Option<&str> {
        self.system_properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_launch(root: &Root, process: &ProcessFacts) -> Launch {
    let mut launch = Launch::default();
    let mut queue: VecDeque<String> = process
        .argv
        .iter()
        .skip(1)
        .take(MAX_ARGS)
        .cloned()
        .collect();
    let mut argfiles = 0usize;
    let mut expand_argfiles = true;
    while let Some(arg) = queue.pop_front() {
        if expand_argfiles && arg.len() > 1 && arg.starts_with('@') && !arg.starts_with("@@") {
            argfiles = argfiles.saturating_add(1);
            if argfiles <= MAX_ARGFILES {
                let tokens = absolute(process, arg.get(1..).unwrap_or_default())
                    .and_then(|p| {
                        root.read_string_bounded(&p, MAX_ARGFILE)
                            .map_err(
                                |e| tracing::debug!(path = p, error = %e, "unreadable argfile"),
                            )
                            .ok()
                    })
                    .map(|text| tokenize_argfile(&text))
                    .unwrap_or_default();
                for token in tokens.into_iter().rev() {
                    if queue.len() >= MAX_ARGS {
                        break;
                    }
                    queue.push_front(token);
                }
            }
            continue;
        }
        match arg.as_str() {
            "--disable-@files" => expand_argfiles = false,
            "-jar" => {
                launch.jar = queue.pop_front();
                break;
            }
            "-m" | "--module" => break,
            a if a.starts_with("--module=") => break,
            a if CLASS_PATH_OPTIONS.contains(&a) => launch.class_path = queue.pop_front(),
            a if a.starts_with("--class-path=") => {
                launch.class_path = Some(a["--class-path=".len()..].to_owned());
            }
            a if OPTIONS_WITH_VALUE.contains(&a) => {
                queue.pop_front();
            }
            a if a.starts_with("-D") => {
                let (k, v) = a[2..].split_once('=').unwrap_or((&a[2..], ""));
                launch.system_properties.push((k.to_owned(), v.to_owned()));
            }
            a if a.starts_with('-') => {}
            _ => {
                // `@@name` stands for a literal `@name` argument.
                let main = arg
                    .strip_prefix('@')
                    .filter(|r| r.starts_with('@'))
                    .unwrap_or(&arg);
                launch.main_class = Some(main.to_owned());
                break;
            }
        }
    }
    launch.app_args = queue.into_iter().collect();
    launch
}

/// JDK `@argfile` syntax: whitespace-separated, `"…"`/`'…'` quoting with backslash escapes
/// inside quotes, `#` starts a comment line.
pub(crate) fn tokenize_argfile(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if tokens.len() >= MAX_ARGS {
            return tokens;
        }
        if let Some(q) = quote {
            match c {
                _ if c == q => quote = None,
                '\\' => match chars.next() {
                    Some('n') => current.push('\n'),
                    Some('t') => current.push('\t'),
                    Some('r') => current.push('\r'),
                    Some('f') => current.push('\u{c}'),
                    Some('\n') => {
                        // Line continuation: leading white space of the next line is dropped.
                        let rest = chars.as_str().trim_start_matches([' ', '\t']);
                        chars = rest.chars();
                    }
                    Some(other) => current.push(other),
                    None => {}
                },
                _ => current.push(c),
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                in_token = true;
            }
            '#' if !in_token => {
                let rest = chars.as_str();
                chars = rest[rest.find('\n').unwrap_or(rest.len())..].chars();
            }
            c if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            c => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        tokens.push(current);
    }
    tokens
}

/// Classpath elements as absolute container paths; `dir/*` expands to the jars in `dir`, an
/// empty element means the working directory (as the launcher does).
fn expand_class_path(root: &Root, process: &ProcessFacts, class_path: &str) -> Vec<String> {
    let mut elements = Vec::new();
    for raw in class_path.split(':').take(MAX_CLASS_PATH_ELEMENTS) {
        let raw = if raw.is_empty() { "." } else { raw };
        if let Some(dir) = raw
            .strip_suffix('*')
            .filter(|d| d.is_empty() || d.ends_with('/'))
        {
            let Some(dir) = absolute(process, if dir.is_empty() { "." } else { dir }) else {
                continue;
            };
            match root.list_dir(&dir) {
                Ok(names) => elements.extend(
                    names
                        .iter()
                        .filter(|n| n.ends_with(".jar") || n.ends_with(".JAR"))
                        .map(|n| join_path(&dir, n)),
                ),
                Err(e) => tracing::debug!(dir, error = %e, "cannot list classpath wildcard"),
            }
        } else if let Some(path) = absolute(process, raw) {
            elements.push(path);
        }
        if elements.len() >= MAX_CLASS_PATH_ELEMENTS {
            elements.truncate(MAX_CLASS_PATH_ELEMENTS);
            break;
        }
    }
    elements
}

// ---- frameworks -----------------------------------------------------------------------------

fn runtimes(root: &Root, process: &ProcessFacts) -> Vec<RuntimeComponent> {
    let launch = parse_launch(root, process);
    if let Some(jar) = launch.jar.as_deref() {
        // The server product first, then table rows (the reference's output-file order).
        let mut found: Vec<RuntimeComponent> = Vec::new();
        if jar.ends_with("jboss-modules.jar") {
            found.extend(jboss_home(process, &launch).and_then(|home| jboss::detect(root, &home)));
        }
        if let Some(path) = absolute(process, jar) {
            found.extend(frameworks::from_executable_jar(root, &path));
        }
        return found;
    }
    let Some(main_class) = launch.main_class.as_deref() else {
        return Vec::new();
    };
    if !frameworks::is_known_main_class(main_class) {
        return Vec::new();
    }
    let class_path = launch
        .class_path
        .as_deref()
        .or_else(|| launch.property("java.class.path"))
        .or_else(|| env(process, "CLASSPATH"))
        .unwrap_or(".");
    let elements = expand_class_path(root, process, class_path);
    frameworks::from_class_path(root, &elements, main_class)
}

/// `JBOSS_HOME`, else the first `-Djboss.home.dir=` (JVM option or, as `standalone.sh` passes
/// it, a server argument).
fn jboss_home(process: &ProcessFacts, launch: &Launch) -> Option<String> {
    let home = env(process, "JBOSS_HOME")
        .or_else(|| launch.property("jboss.home.dir"))
        .or_else(|| {
            launch
                .app_args
                .iter()
                .find_map(|a| a.strip_prefix("-Djboss.home.dir="))
        })?;
    absolute(process, home.trim())
}

#[cfg(test)]
mod tests {
    use super::super::jar::tests::build_jar;
    use super::*;
    use std::collections::BTreeMap;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn file(&self, path: &str, content: &[u8]) -> &Self {
            let p = self.dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
            self
        }
        fn root(&self) -> Root {
            Root::open(self.dir.path()).unwrap()
        }
    }

    fn java(argv: &[&str], cwd: Option<&str>, exe: &str, env: &[(&str, &str)]) -> ProcessFacts {
        ProcessFacts {
            pid: 42,
            comm: "java".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            exe: Some(exe.into()),
            cwd: cwd.map(Into::into),
            ..ProcessFacts::default()
        }
    }

    fn rc(name: &str, version: &str) -> RuntimeComponent {
        RuntimeComponent {
            name: name.into(),
            version: version.into(),
        }
    }

    fn detection(version: &str, implementer: &str, runtimes: Vec<RuntimeComponent>) -> Detection {
        Detection {
            kind: "Java".into(),
            version: version.into(),
            implementer: implementer.into(),
            runtimes,
        }
    }

    const RH_JDK: &str = "/usr/lib/jvm/java-17-openjdk-17.0.13.0.11-3.el8.x86_64";
    const RH_RELEASE: &[u8] = b"IMPLEMENTOR=\"Red Hat, Inc.\"\nJAVA_RUNTIME_VERSION=\"17.0.13+11-LTS\"\nJAVA_VERSION=\"17.0.13\"\nJAVA_VERSION_DATE=\"2024-10-15\"\n";
    const TEMURIN: &str = "/opt/java/openjdk";
    const TEMURIN_RELEASE: &[u8] = b"IMPLEMENTOR=\"Eclipse Adoptium\"\nIMPLEMENTOR_VERSION=\"Temurin-21.0.5+11\"\nJAVA_VERSION=\"21.0.5\"\nMODULES=\"java.base java.logging\"\n";

    fn quarkus_fast_jar(fx: &Fixture, dir: &str, version: &str, main: &str) {
        let runner = build_jar(&[
            (
                "META-INF/MANIFEST.MF",
                format!("Manifest-Version: 1.0\r\nImplementation-Version: {version}\r\n")
                    .as_bytes(),
                true,
            ),
            (
                "io/quarkus/bootstrap/runner/QuarkusEntryPoint.class",
                b"\xca\xfe",
                true,
            ),
            (
                "io/quarkus/bootstrap/runner/AotQuarkusEntryPoint.class",
                b"\xca\xfe",
                true,
            ),
        ]);
        let logging = build_jar(&[
            (
                "META-INF/MANIFEST.MF",
                b"Implementation-Version: 3.6.1.Final\r\n",
                true,
            ),
            ("org/jboss/logging/Logger.class", b"\xca\xfe", true),
        ]);
        let run = build_jar(&[(
            "META-INF/MANIFEST.MF",
            format!(
                "Manifest-Version: 1.0\r\nMain-Class: {main}\r\nClass-Path: lib/boot/org.jboss.logging.jboss-logging-3.6.1.Final.ja\r\n r lib/boot/io.quarkus.quarkus-bootstrap-runner-{version}.jar lib/boot/missing.jar\r\nImplementation-Version: 1.0.0-SNAPSHOT\r\n\r\n"
            )
            .as_bytes(),
            true,
        )]);
        fx.file(&format!("{dir}/quarkus-run.jar"), &run)
            .file(
                &format!("{dir}/lib/boot/org.jboss.logging.jboss-logging-3.6.1.Final.jar"),
                &logging,
            )
            .file(
                &format!("{dir}/lib/boot/io.quarkus.quarkus-bootstrap-runner-{version}.jar"),
                &runner,
            )
            .file(&format!("{dir}/app/app.jar"), b"not a jar");
    }

    #[test]
    fn rhbq_fast_jar_relative_to_workdir() {
        let fx = Fixture::new();
        fx.file(&format!("{RH_JDK}/release"), RH_RELEASE);
        quarkus_fast_jar(
            &fx,
            "/quarkus-app",
            "3.15.3.redhat-00002",
            "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
        );
        let p = java(
            &[
                "java",
                "-Dquarkus.http.host=0.0.0.0",
                "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
                "-jar",
                "quarkus-run.jar",
            ],
            Some("/quarkus-app"),
            &format!("{RH_JDK}/bin/java"),
            &[("PATH", "/usr/local/bin:/usr/bin")],
        );
        assert_eq!(
            detect(&fx.root(), &p),
            Some(detection(
                "17.0.13",
                "Red Hat, Inc.",
                vec![rc("Quarkus", "3.15.3.redhat-00002")]
            ))
        );
    }

    #[test]
    fn quarkus_via_run_java_and_aot_entry_point() {
        let fx = Fixture::new();
        fx.file(&format!("{RH_JDK}/release"), RH_RELEASE);
        quarkus_fast_jar(
            &fx,
            "/deployments",
            "3.29.2",
            "io.quarkus.bootstrap.runner.AotQuarkusEntryPoint",
        );
        // run-java.sh: `-cp .` before `-jar` does not matter; JAVA_HOME points at the JDK.
        let p = java(
            &[
                "java",
                "-XX:MaxRAMPercentage=80.0",
                "-XX:+ExitOnOutOfMemoryError",
                "-cp",
                ".",
                "-jar",
                "/deployments/quarkus-run.jar",
            ],
            Some("/home/jboss"),
            "/usr/bin/java",
            &[("JAVA_HOME", RH_JDK)],
        );
        assert_eq!(
            detect(&fx.root(), &p),
            Some(detection(
                "17.0.13",
                "Red Hat, Inc.",
                vec![rc("Quarkus", "3.29.2")]
            ))
        );
    }

    fn spring_boot_app(main: &str, version: &str) -> Vec<u8> {
        build_jar(&[
            (
                "META-INF/MANIFEST.MF",
                format!("Manifest-Version: 1.0\r\nMain-Class: {main}\r\nStart-Class: com.example.App\r\nSpring-Boot-Version: {version}\r\nSpring-Boot-Classes: BOOT-INF/classes/\r\n\r\n").as_bytes(),
                true,
            ),
            ("org/springframework/boot/loader/launch/JarLauncher.class", b"\xca\xfe", true),
            ("BOOT-INF/classes/com/example/App.class", b"\xca\xfe", true),
        ])
    }

    #[test]
    fn spring_boot_jars_and_wars_old_and_new_launchers() {
        let cases = [
            (
                "/app/app.jar",
                "org.springframework.boot.loader.launch.JarLauncher",
                "3.1.4",
            ),
            (
                "/app/sb-343.war",
                "org.springframework.boot.loader.launch.WarLauncher",
                "3.4.3",
            ),
            (
                "/app/old.jar",
                "org.springframework.boot.loader.JarLauncher",
                "2.7.18",
            ),
            (
                "/app/old.war",
                "org.springframework.boot.loader.WarLauncher",
                "2.5.0",
            ),
            (
                "/app/props.jar",
                "org.springframework.boot.loader.launch.PropertiesLauncher",
                "3.5.3",
            ),
            (
                "/app/oldprops.jar",
                "org.springframework.boot.loader.PropertiesLauncher",
                "2.1.0",
            ),
        ];
        let fx = Fixture::new();
        fx.file(&format!("{TEMURIN}/release"), TEMURIN_RELEASE);
        for (path, main, version) in cases {
            fx.file(path, &spring_boot_app(main, version));
        }
        let root = fx.root();
        for (path, _, version) in cases {
            let p = java(
                &["java", "-jar", path],
                Some("/"),
                &format!("{TEMURIN}/bin/java"),
                &[("JAVA_HOME", TEMURIN)],
            );
            assert_eq!(
                detect(&root, &p),
                Some(detection(
                    "21.0.5",
                    "Eclipse Adoptium",
                    vec![rc("Spring Boot", version)]
                )),
                "{path}"
            );
        }
    }

    fn tomcat(fx: &Fixture, home: &str, version: &str) {
        let bootstrap = build_jar(&[
            (
                "META-INF/MANIFEST.MF",
                format!("Manifest-Version: 1.0\r\nMain-Class: org.apache.catalina.startup.Bootstrap\r\nImplementation-Title: Apache Tomcat Bootstrap\r\nImplementation-Version: {version}\r\n\r\n").as_bytes(),
                true,
            ),
            ("org/apache/catalina/startup/Bootstrap.class", b"\xca\xfe", true),
        ]);
        let juli = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Implementation-Version: 0.0.0\r\n",
            true,
        )]);
        fx.file(&format!("{home}/bin/bootstrap.jar"), &bootstrap)
            .file(&format!("{home}/bin/tomcat-juli.jar"), &juli);
    }

    #[test]
    fn tomcat_from_catalina_sh_command_line() {
        let fx = Fixture::new();
        fx.file(&format!("{TEMURIN}/release"), TEMURIN_RELEASE);
        tomcat(&fx, "/usr/local/tomcat", "11.0.1");
        let argv = [
            "/opt/java/openjdk/bin/java",
            "-Djava.util.logging.config.file=/usr/local/tomcat/conf/logging.properties",
            "-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager",
            "-Djdk.tls.ephemeralDHKeySize=2048",
            "-Djava.protocol.handler.pkgs=org.apache.catalina.webresources",
            "-Dorg.apache.catalina.security.SecurityListener.UMASK=0027",
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "--add-opens",
            "java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED",
            "-classpath",
            "/usr/local/tomcat/bin/bootstrap.jar:/usr/local/tomcat/bin/tomcat-juli.jar",
            "-Dcatalina.base=/usr/local/tomcat",
            "-Dcatalina.home=/usr/local/tomcat",
            "-Djava.io.tmpdir=/usr/local/tomcat/temp",
            "org.apache.catalina.startup.Bootstrap",
            "start",
        ];
        // No JAVA_HOME: the version comes from the executable's own JDK.
        let p = java(
            &argv,
            Some("/usr/local/tomcat"),
            "/opt/java/openjdk/bin/java",
            &[],
        );
        assert_eq!(
            detect(&fx.root(), &p),
            Some(detection(
                "21.0.5",
                "Eclipse Adoptium",
                vec![rc("Apache Tomcat", "11.0.1")]
            ))
        );
    }

    #[test]
    fn relative_class_path_entries_and_class_path_sources() {
        let fx = Fixture::new();
        tomcat(&fx, "/srv/tomcat", "9.0.87.redhat-00003");
        let root = fx.root();
        let main = "org.apache.catalina.startup.Bootstrap";
        let expected = vec![rc("Apache Tomcat", "9.0.87.redhat-00003")];
        let exe = "/usr/lib/jvm/jre/bin/java";
        let cwd = Some("/srv/tomcat");
        let cases: Vec<ProcessFacts> = vec![
            java(
                &[
                    "java",
                    "-cp",
                    "bin/bootstrap.jar:./bin/tomcat-juli.jar",
                    main,
                    "start",
                ],
                cwd,
                exe,
                &[],
            ),
            java(
                &["java", "--class-path", "../tomcat/bin/bootstrap.jar", main],
                cwd,
                exe,
                &[],
            ),
            java(
                &["java", "--class-path=bin/bootstrap.jar", main],
                cwd,
                exe,
                &[],
            ),
            java(
                &["java", "-Djava.class.path=bin/bootstrap.jar", main],
                cwd,
                exe,
                &[],
            ),
            java(&["java", "-cp", "bin/*", main], cwd, exe, &[]),
            java(
                &["java", main, "start"],
                cwd,
                exe,
                &[("CLASSPATH", "/srv/tomcat/bin/bootstrap.jar")],
            ),
        ];
        for p in &cases {
            assert_eq!(detect(&root, p).unwrap().runtimes, expected, "{:?}", p.argv);
        }
        // -cp wins over CLASSPATH; the main class is the first non-option, not any argument.
        let p = java(
            &["java", "-cp", "bin/tomcat-juli.jar", main],
            cwd,
            exe,
            &[("CLASSPATH", "bin/bootstrap.jar")],
        );
        assert_eq!(
            detect(&root, &p).unwrap().runtimes,
            vec![rc("Apache Tomcat", "")]
        );
        let p = java(
            &[
                "java",
                "-cp",
                "bin/bootstrap.jar",
                "com.example.Other",
                main,
            ],
            cwd,
            exe,
            &[],
        );
        assert_eq!(detect(&root, &p).unwrap().runtimes, vec![]);
        // Relative paths without a working directory are not guessed.
        let p = java(&["java", "-cp", "bin/bootstrap.jar", main], None, exe, &[]);
        assert_eq!(
            detect(&root, &p).unwrap().runtimes,
            vec![rc("Apache Tomcat", "")]
        );
    }

    #[test]
    fn argfiles_are_expanded() {
        let fx = Fixture::new();
        tomcat(&fx, "/usr/local/tomcat", "10.1.36.redhat-00007");
        fx.file(
            "/etc/jvm.args",
            b"# JVM options\n-Xmx512m\n-cp \"/usr/local/tomcat/bin/bootstrap.jar\"\n'org.apache.catalina.startup.Bootstrap' start\n",
        );
        let p = java(&["java", "@/etc/jvm.args"], Some("/"), "/usr/bin/java", &[]);
        assert_eq!(
            detect(&fx.root(), &p).unwrap().runtimes,
            vec![rc("Apache Tomcat", "10.1.36.redhat-00007")]
        );
        assert_eq!(
            tokenize_argfile("a \"b c\" 'd\\te' #x\n# comment\n f\"g h\"\n\"x\\\n   y\""),
            ["a", "b c", "d\te", "fg h", "xy"]
        );
    }

    fn eap(fx: &Fixture, version_txt: &[u8]) {
        fx.file("/opt/eap/version.txt", version_txt).file(
            "/opt/eap/jboss-modules.jar",
            &build_jar(&[(
                "META-INF/MANIFEST.MF",
                b"Main-Class: org.jboss.modules.Main\n",
                true,
            )]),
        );
    }

    const EAP_ARGV: &[&str] = &[
        "java",
        "-D[Standalone]",
        "-server",
        "-Xms1303m",
        "--add-exports=java.desktop/sun.awt=ALL-UNNAMED",
        "-Dorg.jboss.boot.log.file=/opt/eap/standalone/log/server.log",
        "-jar",
        "/opt/eap/jboss-modules.jar",
        "-mp",
        "/opt/eap/modules",
        "org.jboss.as.standalone",
        "-Djboss.home.dir=/opt/eap",
        "-Djboss.server.base.dir=/opt/eap/standalone",
    ];

    #[test]
    fn eap_74_on_java_8_without_release_file() {
        let fx = Fixture::new();
        eap(
            &fx,
            b"Red Hat JBoss Enterprise Application Platform - Version 7.4.19.GA\n",
        );
        fx.file(
            "/usr/lib/jvm/java-1.8.0-openjdk-1.8.0.432.b06-2.el8.x86_64/jre/bin/java",
            b"\x7fELF",
        );
        let p = java(
            EAP_ARGV,
            Some("/home/jboss"),
            "/usr/lib/jvm/java-1.8.0-openjdk-1.8.0.432.b06-2.el8.x86_64/jre/bin/java",
            &[
                ("JBOSS_HOME", "/opt/eap"),
                ("JAVA_HOME", "/usr/lib/jvm/java-1.8.0"),
            ],
        );
        assert_eq!(
            detect(&fx.root(), &p),
            Some(detection(
                "",
                "",
                vec![rc(
                    "Red Hat JBoss Enterprise Application Platform",
                    "7.4.19.GA"
                )]
            ))
        );
    }

    #[test]
    fn eap_8_home_from_system_property_and_java_8_jre_release() {
        let fx = Fixture::new();
        eap(
            &fx,
            b"Red Hat JBoss Enterprise Application Platform - Version 8.0 Update 6.1\n",
        );
        // A JDK 8 layout: the release file sits next to jre/.
        fx.file(
            "/usr/lib/jvm/jdk8/release",
            b"JAVA_VERSION=\"1.8.0_432\"\nIMPLEMENTOR=\"Red Hat, Inc.\"\n",
        );
        let p = java(EAP_ARGV, Some("/"), "/usr/lib/jvm/jdk8/jre/bin/java", &[]);
        assert_eq!(
            detect(&fx.root(), &p),
            Some(detection(
                "1.8.0_432",
                "Red Hat, Inc.",
                vec![rc(
                    "Red Hat JBoss Enterprise Application Platform",
                    "8.0 Update 6.1"
                )]
            ))
        );
        // Without JBOSS_HOME or -Djboss.home.dir nothing is guessed.
        let argv: Vec<&str> = EAP_ARGV
            .iter()
            .copied()
            .filter(|a| !a.starts_with("-Djboss.home.dir"))
            .collect();
        let p = java(&argv, Some("/"), "/usr/lib/jvm/jdk8/jre/bin/java", &[]);
        assert_eq!(detect(&fx.root(), &p).unwrap().runtimes, vec![]);
    }

    #[test]
    fn wildfly_product_module_and_feature_pack() {
        let product = "/opt/jboss/wildfly/modules/system/layers/base/org/jboss/as/product/main";
        let argv = [
            "/opt/java/openjdk/bin/java",
            "-D[Standalone]",
            "-Djboss.home.dir=/opt/jboss/wildfly",
            "-jar",
            "/opt/jboss/wildfly/jboss-modules.jar",
            "-mp",
            "/opt/jboss/wildfly/modules",
            "org.jboss.as.standalone",
        ];
        let fx = Fixture::new();
        fx.file(&format!("{TEMURIN}/release"), TEMURIN_RELEASE).file(
            &format!("{product}/dir/META-INF/MANIFEST.MF"),
            b"JBoss-Product-Release-Name: WildFly Full\r\nJBoss-Product-Release-Version: 30.0.1.Final\r\n",
        );
        let p = java(&argv, Some("/opt/jboss"), "/opt/java/openjdk/bin/java", &[]);
        assert_eq!(
            detect(&fx.root(), &p),
            Some(detection(
                "21.0.5",
                "Eclipse Adoptium",
                vec![rc("WildFly Full", "30.0.1.Final")]
            ))
        );

        let fx = Fixture::new();
        let conf = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"JBoss-Product-Release-Name: WildFly\r\nJBoss-Product-Release-Version: 34.0.0.Final\r\n",
            true,
        )]);
        fx.file(
            &format!("{product}/wildfly-feature-pack-product-conf-34.0.0.Final.jar"),
            &conf,
        );
        let p = java(&argv, Some("/opt/jboss"), "/opt/java/openjdk/bin/java", &[]);
        assert_eq!(
            detect(&fx.root(), &p).unwrap().runtimes,
            vec![rc("WildFly", "34.0.0.Final")]
        );
    }

    #[test]
    fn jdk_home_sources_in_order() {
        let fx = Fixture::new();
        fx.file(&format!("{TEMURIN}/release"), TEMURIN_RELEASE)
            .file(&format!("{RH_JDK}/release"), RH_RELEASE)
            .file(&format!("{RH_JDK}/bin/java"), b"\x7fELF")
            .file("/usr/lib/jvm/jre-21/bin/java", b"\x7fELF");
        let root = fx.root();
        let version = |p: &ProcessFacts| {
            let d = detect(&root, p).unwrap();
            (d.version, d.implementer)
        };
        let temurin = ("21.0.5".to_owned(), "Eclipse Adoptium".to_owned());
        let rh = ("17.0.13".to_owned(), "Red Hat, Inc.".to_owned());
        // JAVA_HOME with a release file first.
        let p = java(
            &["java", "-version"],
            None,
            &format!("{RH_JDK}/bin/java"),
            &[("JAVA_HOME", TEMURIN)],
        );
        assert_eq!(version(&p), temurin);
        // JAVA_HOME without a release file: the executable's JDK.
        let p = java(
            &["java"],
            None,
            &format!("{RH_JDK}/bin/java"),
            &[("JAVA_HOME", "/nowhere")],
        );
        assert_eq!(version(&p), rh);
        // A replaced binary still names its JDK.
        let p = java(
            &["java"],
            None,
            &format!("{RH_JDK}/bin/java (deleted)"),
            &[],
        );
        assert_eq!(version(&p), rh);
        // No usable exe: the PATH entries (skipping those without `java`).
        let mut p = java(
            &["java"],
            None,
            "/",
            &[(
                "PATH",
                &format!("relative:/usr/lib/jvm/jre-21/bin:{RH_JDK}/bin"),
            )],
        );
        p.exe = None;
        assert_eq!(version(&p), rh);
        // Nothing at all: still a JVM, without version.
        p.env.clear();
        assert_eq!(version(&p), (String::new(), String::new()));
    }

    #[test]
    fn recognises_jvms_only() {
        let fx = Fixture::new();
        let root = fx.root();
        // Empty argv (zombie / unreadable cmdline): kind only, no panic.
        let mut p = java(&[], None, "/usr/bin/java", &[]);
        assert_eq!(detect(&root, &p), Some(detection("", "", vec![])));
        // Renamed comm, real exe named java.
        p.comm = "my-service".into();
        assert!(detect(&root, &p).is_some());
        p.exe = Some("/usr/lib/jvm/jdk/bin/javac".into());
        p.comm = "javac".into();
        assert_eq!(detect(&root, &p), None);
        p.comm = "node".into();
        p.exe = Some("/usr/bin/node".into());
        assert_eq!(detect(&root, &p), None);
        p.exe = None;
        p.comm = "java".into();
        assert!(detect(&root, &p).is_some());
    }

    #[test]
    fn plain_and_broken_jars_give_kind_only() {
        let fx = Fixture::new();
        fx.file(&format!("{RH_JDK}/release"), RH_RELEASE)
            .file(
                "/plain-java-app.jar",
                &build_jar(&[(
                    "META-INF/MANIFEST.MF",
                    b"Main-Class: com.example.Main\n",
                    true,
                )]),
            )
            .file("/broken.jar", b"PK\x03\x04 truncated");
        let root = fx.root();
        for jar in [
            "/plain-java-app.jar",
            "/broken.jar",
            "/missing.jar",
            "relative.jar",
        ] {
            let p = java(
                &["java", "-jar", jar],
                None,
                &format!("{RH_JDK}/bin/java"),
                &[],
            );
            assert_eq!(
                detect(&root, &p),
                Some(detection("17.0.13", "Red Hat, Inc.", vec![])),
                "{jar}"
            );
        }
        // `-jar` as the last argument, module launches, options only.
        for argv in [
            &["java", "-jar"][..],
            &["java", "-m", "app/com.example.Main"],
            &["java", "-Xmx1g"],
        ] {
            let p = java(argv, None, &format!("{RH_JDK}/bin/java"), &[]);
            assert_eq!(detect(&root, &p).unwrap().runtimes, vec![], "{argv:?}");
        }
    }

    #[test]
    fn launch_parsing() {
        let fx = Fixture::new();
        let root = fx.root();
        let parse =
            |argv: &[&str]| parse_launch(&root, &java(argv, Some("/w"), "/j/bin/java", &[]));
        let l = parse(&[
            "java",
            "-p",
            "mods",
            "--add-modules",
            "ALL-SYSTEM",
            "-Da=b",
            "-Dflag",
            "Main",
            "x",
            "-Dafter=1",
        ]);
        assert_eq!(l.main_class.as_deref(), Some("Main"));
        assert_eq!(
            l.system_properties,
            [("a".into(), "b".into()), ("flag".into(), String::new())]
        );
        assert_eq!(l.app_args, ["x", "-Dafter=1"]);
        let l = parse(&["java", "-cp", "a", "-classpath", "b", "Main"]);
        assert_eq!(l.class_path.as_deref(), Some("b"));
        let l = parse(&["java", "@@literal"]);
        assert_eq!(l.main_class.as_deref(), Some("@literal"));
        let l = parse(&["java", "@/missing.args", "-jar", "x.jar", "arg"]);
        assert_eq!(
            (l.jar.as_deref(), l.app_args.as_slice()),
            (Some("x.jar"), &["arg".to_owned()][..])
        );
    }

    /// The machine's real JDK `release` file (CI installs openjdk-17-jdk-headless).
    #[test]
    fn real_jdk_release_file() {
        let homes: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/jvm")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("release").is_file() && !p.is_symlink())
            .collect();
        if homes.is_empty() {
            panic!(
                "no JDK under /usr/lib/jvm in CI (bash scripts/install-test-deps.sh installs it)"
            );
        }
        for home in homes {
            let text = std::fs::read_to_string(home.join("release")).unwrap();
            let field = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{key}=")))
                    .map(|v| v.trim_matches('"').to_owned())
                    .unwrap_or_default()
            };
            let (version, vendor) = (field("JAVA_VERSION"), field("IMPLEMENTOR"));
            assert!(!version.is_empty(), "{}", home.display());
            let container_home = home.to_str().unwrap();
            let fx = Fixture::new();
            fx.file(&format!("{container_home}/release"), text.as_bytes())
                .file(&format!("{container_home}/bin/java"), b"placeholder");
            let p = java(
                &["java", "-jar", "/app.jar"],
                Some("/"),
                &format!("{container_home}/bin/java"),
                &[],
            );
            let d = detect(&fx.root(), &p).unwrap();
            assert_eq!(
                (d.kind.as_str(), d.version.as_str(), d.implementer.as_str()),
                ("Java", version.as_str(), vendor.as_str())
            );
        }
    }
}
