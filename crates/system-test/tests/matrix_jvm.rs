//! The JVM half of the end-to-end runtime matrix (issue 5), on a real containerd: every case is
//! a kubelet-labelled pod whose image carries its own `/etc/os-release` and application files,
//! with Debian's OpenJDK bind-mounted read-only where that kind of image keeps its JDK. One
//! sandbox, every pod started, each JVM's application code reached (its `ready:` line, or
//! Tomcat's "Server startup"), then ONE `runtime-extractor scan` of the node, compared case by
//! case with the exact expected `ContainerRuntimeInfo` (all mismatches reported together).
//!
//! Versions are read from the machine, never written down: the JDK's from its `release` file
//! (checked against the Debian package version), Tomcat's from the `tomcat10` package (checked
//! against the `Implementation-Version` of its `bootstrap.jar`). The framework versions of the
//! layouts the test builds itself (Spring Boot, Quarkus, WildFly, EAP) are the ones it writes
//! into their manifests and version files.
//!
//! Needs root, containerd, Debian's openjdk-17-jdk-headless and tomcat10
//! (`scripts/install-test-deps.sh`); skips loudly otherwise and fails under CI=true.

mod common;

use std::io::Read as _;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_cases, expected, scan_node, wait_for_log, write_files, Case};
use runtime_info::ContainerRuntimeInfo;
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, ImageBuild, PodSpec, RunningPod};
use testkit::rootfs::require;
use testkit::workloads::jvm::{
    debian_jdk, DebianJdk, JBossProduct, QuarkusPackaging, SpringLauncher, StandIns,
    EAP_PRODUCT_NAME, READY,
};
use testkit::workloads::{self, jdk_release};

/// Small JVMs: up to 14 of them start at once on a 2-core CI machine.
const JVM_OPTS: &[&str] = &[
    "-Xmx32m",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-XX:+UseSerialGC",
];
const NAMESPACE: &str = "jvm-matrix";
const TOMCAT_PACKAGE: &str = "tomcat10";
/// How long all the JVMs together may take to reach their application code.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// An `/etc/os-release` in the style of the distribution's own (quoting differs between them).
fn os_release(id: &str, version: &str) -> String {
    match id {
        "rhel" => format!(
            "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"{version} (test)\"\nID=\"rhel\"\n\
             ID_LIKE=\"fedora\"\nVERSION_ID=\"{version}\"\nPLATFORM_ID=\"platform:el{}\"\n\
             PRETTY_NAME=\"Red Hat Enterprise Linux {version} (test)\"\n",
            version.split('.').next().unwrap_or(version)
        ),
        "ubuntu" => format!(
            "PRETTY_NAME=\"Ubuntu {version} LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"{version}\"\n\
             VERSION=\"{version} LTS (test)\"\nID=ubuntu\nID_LIKE=debian\n"
        ),
        "centos" => format!(
            "NAME=\"CentOS Linux\"\nVERSION=\"{version} (Core)\"\nID=\"centos\"\n\
             ID_LIKE=\"rhel fedora\"\nVERSION_ID=\"{version}\"\n"
        ),
        other => panic!("no os-release template for {other}"),
    }
}

/// `ID` and `VERSION_ID` of an os-release text (the test's own reading, for the host's file).
fn os_id_version(text: &str) -> (String, String) {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    (field("ID"), field("VERSION_ID"))
}

/// A manifest attribute of a jar on the host.
fn jar_manifest_value(jar: &Path, key: &str) -> Option<String> {
    let file = std::fs::File::open(jar).ok()?;
    let mut zip = zip::ZipArchive::new(file).ok()?;
    let mut text = String::new();
    zip.by_name("META-INF/MANIFEST.MF")
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim().to_owned())
}

fn mkdirs_world_writable(root: &Path, dirs: &[&str]) {
    for d in dirs {
        let p = root.join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
}

fn link(root: &Path, at: &str, target: &str) {
    let p = root.join(at);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

/// Copy a directory tree (regular files and directories; symlinks kept as symlinks),
/// making every file world-readable: the copy goes into an image run as a non-root user.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ty = entry.file_type().unwrap();
        if ty.is_symlink() {
            symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ty.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// The JDK mounted read-only at `at` in the container, with what it needs beside it.
fn with_jdk(spec: ContainerSpec, jdk: &DebianJdk, at: &str) -> ContainerSpec {
    let mut spec = spec.mount(&jdk.home, at, true).with_host_libraries();
    if let Some(cfg) = &jdk.config_dir {
        spec = spec.mount(cfg, cfg.to_str().unwrap(), true);
    }
    spec
}

/// The JDK laid out as a Java 8 JRE at `<at>/jre` (`bin/`, `lib/`, `conf/`), with no
/// `release` file anywhere: what RHEL's java-1.8.0-openjdk images look like to a scanner.
fn with_java8_style_jre(spec: ContainerSpec, jdk: &DebianJdk, at: &str) -> ContainerSpec {
    let mut spec = spec;
    for sub in ["bin", "lib", "conf"] {
        spec = spec.mount(jdk.home.join(sub), &format!("{at}/jre/{sub}"), true);
    }
    spec = spec.with_host_libraries();
    if let Some(cfg) = &jdk.config_dir {
        spec = spec.mount(cfg, cfg.to_str().unwrap(), true);
    }
    spec
}

/// `java <JVM_OPTS> <rest>` as an argv.
fn java_argv(java: &str, rest: &[&str]) -> Vec<String> {
    std::iter::once(java)
        .chain(JVM_OPTS.iter().copied())
        .chain(rest.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// One row of the matrix before it runs.
struct Row {
    label: &'static str,
    /// Image layer on top of busybox: `etc/os-release` and the application's files.
    layer: PathBuf,
    container: ContainerSpec,
    /// A log line the container prints once its application code runs.
    ready: String,
    expected: ContainerRuntimeInfo,
}

/// What every row is built from.
struct Matrix {
    work: tempfile::TempDir,
    jdk: DebianJdk,
    stand_ins: StandIns,
    /// `JAVA_VERSION` and `IMPLEMENTOR` of the JDK's release file.
    java_version: String,
    implementor: String,
}

impl Matrix {
    /// A fresh image layer holding `os_release` as `etc/os-release`.
    fn layer(&self, name: &str, os_release: &str) -> PathBuf {
        let dir = self.work.path().join("layers").join(name);
        write_files(&dir, &[("etc/os-release", os_release)]);
        dir
    }

    fn want_java(
        &self,
        os: &str,
        os_version: &str,
        runtimes: &[(&str, &str)],
    ) -> ContainerRuntimeInfo {
        expected(
            os,
            os_version,
            "Java",
            &self.java_version,
            &self.implementor,
            runtimes,
        )
    }

    /// Without a release file the JVM is still Java, but nothing says which one.
    fn want_java_no_release(
        &self,
        os: &str,
        os_version: &str,
        runtimes: &[(&str, &str)],
    ) -> ContainerRuntimeInfo {
        expected(os, os_version, "Java", "", "", runtimes)
    }

    fn ready_line(&self, class: &str) -> String {
        format!("{READY}{class}")
    }

    /// Plain applications: with and without JAVA_HOME, and on a Java 8-style JRE.
    fn plain_java(&self, rows: &mut Vec<Row>) {
        let main = self.stand_ins.plain_main_class();
        // A ubi8-style image: `java` on PATH through /etc/alternatives, JAVA_HOME a symlink
        // to the JDK, `java -jar` of an application without a framework.
        let l = self.layer("java-home", &os_release("rhel", "8.10"));
        self.stand_ins.plain_app(&l.join("app")).unwrap();
        link(&l, "usr/bin/java", "/etc/alternatives/java");
        link(
            &l,
            "etc/alternatives/java",
            "/usr/lib/jvm/java-17-openjdk/bin/java",
        );
        link(&l, "usr/lib/jvm/java-17", "java-17-openjdk");
        let spec = container(
            "app",
            &java_argv("java", &["-jar", "/app/plain-java-app.jar"]),
        )
        .env("JAVA_HOME", "/usr/lib/jvm/java-17")
        .run_as_user(185);
        rows.push(Row {
            label: "java-with-java-home",
            layer: l,
            container: with_jdk(spec, &self.jdk, "/usr/lib/jvm/java-17-openjdk"),
            ready: self.ready_line(main),
            expected: self.want_java("rhel", "8.10", &[]),
        });

        // A Temurin-style image without JAVA_HOME (the JDK in /opt/java/openjdk, its bin on
        // PATH): `java -cp <classes dir> <main class>`.
        let l = self.layer("java-no-home", &os_release("ubuntu", "24.04"));
        self.stand_ins.plain_app(&l.join("app")).unwrap();
        let spec = container("app", &java_argv("java", &["-cp", "/app/classes", main]))
            .env(
                "PATH",
                "/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .run_as_user(1001);
        rows.push(Row {
            label: "java-without-java-home",
            layer: l,
            container: with_jdk(spec, &self.jdk, "/opt/java/openjdk"),
            ready: self.ready_line(main),
            expected: self.want_java("ubuntu", "24.04", &[]),
        });

        // Java 8 style: a JRE under <jdk>/jre, no release file; JAVA_HOME names the JDK dir.
        let l = self.layer("java8", &os_release("centos", "7"));
        self.stand_ins.plain_app(&l.join("app")).unwrap();
        let home = "/usr/lib/jvm/java-1.8.0-openjdk";
        let exe = format!("{home}/jre/bin/java");
        let spec = container("app", &java_argv(&exe, &["-cp", "/app/classes", main]))
            .env("JAVA_HOME", home);
        rows.push(Row {
            label: "java-8-style-no-release",
            layer: l,
            container: with_java8_style_jre(spec, &self.jdk, home),
            ready: self.ready_line(main),
            expected: self.want_java_no_release("centos", "7", &[]),
        });
    }

    /// Apache Tomcat from Debian's package, started as its systemd unit does (`cd
    /// $CATALINA_BASE && exec $CATALINA_HOME/bin/catalina.sh run`, with CATALINA_BASE laid out
    /// as the package lays out /var/lib/tomcat10), in an image with the host's os-release.
    fn tomcat(&self, rows: &mut Vec<Row>, tomcat_home: &Path, tomcat_version: &str) {
        let host_os_release = std::fs::read_to_string("/etc/os-release").unwrap();
        let (host_os, host_os_version) = os_id_version(&host_os_release);
        let l = self.layer("tomcat", &host_os_release);
        let conf = Path::new("/etc").join(TOMCAT_PACKAGE);
        copy_tree(&conf, &l.join("etc/tomcat10"));
        // Pods share the host network: a random HTTP port instead of 8080 (the shutdown port
        // is already disabled in Debian's server.xml).
        let server_xml = l.join("etc/tomcat10/server.xml");
        let text = std::fs::read_to_string(&server_xml).unwrap();
        assert!(text.contains("<Connector port=\"8080\""), "{text}");
        std::fs::write(
            &server_xml,
            text.replace("<Connector port=\"8080\"", "<Connector port=\"0\""),
        )
        .unwrap();
        mkdirs_world_writable(
            &l,
            &[
                "etc/tomcat10/Catalina",
                "var/log/tomcat10",
                "var/cache/tomcat10",
                "var/lib/tomcat10/webapps",
                "var/lib/tomcat10/lib",
            ],
        );
        copy_tree(
            Path::new("/var/lib/tomcat10/webapps/ROOT"),
            &l.join("var/lib/tomcat10/webapps/ROOT"),
        );
        link(&l, "var/lib/tomcat10/conf", "/etc/tomcat10");
        link(&l, "var/lib/tomcat10/logs", "../../log/tomcat10");
        link(&l, "var/lib/tomcat10/work", "../../cache/tomcat10");
        // Debian's JAVA_OPTS, with a heap for Tomcat in place of the matrix's smaller one.
        let java_opts = std::iter::once("-Djava.awt.headless=true")
            .chain(JVM_OPTS.iter().copied().filter(|o| !o.starts_with("-Xmx")))
            .chain(["-Xmx64m"])
            .collect::<Vec<_>>()
            .join(" ");
        let jdk_path = self.jdk.home.to_str().unwrap();
        let catalina_home = tomcat_home.to_str().unwrap();
        let spec = ContainerSpec::new(
            "tomcat",
            &[
                "/bin/sh",
                "-c",
                "cd \"$CATALINA_BASE\" && exec \"$CATALINA_HOME/bin/catalina.sh\" run",
            ],
        )
        .env("CATALINA_HOME", catalina_home)
        .env("CATALINA_BASE", "/var/lib/tomcat10")
        .env("CATALINA_TMPDIR", "/tmp")
        .env("JAVA_HOME", jdk_path)
        .env("JAVA_OPTS", &java_opts)
        .mount(tomcat_home, catalina_home, true)
        // The package's jars are symlinks into /usr/share/java.
        .mount("/usr/share/java", "/usr/share/java", true)
        .run_as_user(1001);
        rows.push(Row {
            label: "tomcat10-debian",
            layer: l,
            container: with_jdk(spec, &self.jdk, jdk_path),
            ready: "Server startup in".into(),
            expected: self.want_java(
                &host_os,
                &host_os_version,
                &[("Apache Tomcat", tomcat_version)],
            ),
        });
    }

    /// Spring Boot: every launcher, in the archive it belongs to, in ubi (JDK under
    /// /usr/lib/jvm) and Temurin (/opt/java/openjdk) style images.
    fn spring_boot(&self, rows: &mut Vec<Row>) {
        struct Sb {
            label: &'static str,
            launcher: SpringLauncher,
            version: &'static str,
            os: (&'static str, &'static str),
            jdk_at: &'static str,
            archive: &'static str,
            uid: i64,
        }
        let ubi_jdk = "/usr/lib/jvm/java-17-openjdk";
        let temurin = "/opt/java/openjdk";
        for sb in [
            Sb {
                label: "spring-boot-jar",
                launcher: SpringLauncher::Jar,
                version: "3.5.3",
                os: ("rhel", "8.10"),
                jdk_at: ubi_jdk,
                archive: "/deployments/app.jar",
                uid: 185,
            },
            Sb {
                label: "spring-boot-war",
                launcher: SpringLauncher::War,
                version: "3.4.3",
                os: ("rhel", "8.10"),
                jdk_at: ubi_jdk,
                archive: "/app/sb-343.war",
                uid: 1001,
            },
            Sb {
                label: "spring-boot-properties",
                launcher: SpringLauncher::Properties,
                version: "3.3.5",
                os: ("ubuntu", "22.04"),
                jdk_at: temurin,
                archive: "/app/app.jar",
                uid: 1001,
            },
            Sb {
                label: "spring-boot-legacy-jar",
                launcher: SpringLauncher::LegacyJar,
                version: "3.1.4",
                os: ("ubuntu", "20.04"),
                jdk_at: temurin,
                archive: "/app/app.jar",
                uid: 1001,
            },
        ] {
            let l = self.layer(sb.label, &os_release(sb.os.0, sb.os.1));
            let built = self
                .stand_ins
                .spring_boot(
                    &self.work.path().join("spring").join(sb.label),
                    sb.launcher,
                    sb.version,
                )
                .unwrap();
            let dest = l.join(sb.archive.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&built, &dest).unwrap();
            let java = format!("{}/bin/java", sb.jdk_at);
            let start = self.stand_ins.spring_start_class();
            // PropertiesLauncher is mostly started from the class path, the others with -jar.
            let argv = if sb.launcher == SpringLauncher::Properties {
                let loader_main = format!("-Dloader.main={start}");
                java_argv(
                    &java,
                    &[&loader_main, "-cp", sb.archive, sb.launcher.class_name()],
                )
            } else {
                java_argv(&java, &["-jar", sb.archive])
            };
            let spec = container("app", &argv)
                .env("JAVA_HOME", sb.jdk_at)
                .run_as_user(sb.uid);
            rows.push(Row {
                label: sb.label,
                layer: l,
                container: with_jdk(spec, &self.jdk, sb.jdk_at),
                ready: self.ready_line(start),
                expected: self.want_java(sb.os.0, sb.os.1, &[("Spring Boot", sb.version)]),
            });
        }
    }

    /// Quarkus: fast-jar started from its directory (`java -jar quarkus-run.jar`, as the Red
    /// Hat build's images do), the AOT entry point from /deployments (run-java.sh style).
    fn quarkus(&self, rows: &mut Vec<Row>) {
        let jdk_at = "/usr/lib/jvm/java-17-openjdk";
        for (label, packaging, version, os_version, app_dir, cwd, jar) in [
            (
                "quarkus-fast-jar",
                QuarkusPackaging::FastJar,
                "3.15.3.redhat-00002",
                "8.10",
                "quarkus-app",
                "/quarkus-app",
                "quarkus-run.jar",
            ),
            (
                "quarkus-aot",
                QuarkusPackaging::Aot,
                "3.29.2",
                "9.6",
                "deployments",
                "/home/default",
                "/deployments/quarkus-run.jar",
            ),
        ] {
            let l = self.layer(label, &os_release("rhel", os_version));
            let built = self
                .stand_ins
                .quarkus_app(
                    &self.work.path().join("quarkus").join(label),
                    packaging,
                    version,
                )
                .unwrap();
            std::fs::rename(&built, l.join(app_dir)).unwrap();
            mkdirs_world_writable(&l, &[cwd.trim_start_matches('/')]);
            let argv = java_argv("java", &["-Dquarkus.http.host=0.0.0.0", "-jar", jar]);
            let spec = container("app", &argv)
                .env("JAVA_HOME", jdk_at)
                .env(
                    "PATH",
                    &format!("{jdk_at}/bin:/usr/local/bin:/usr/bin:/bin"),
                )
                .working_dir(cwd)
                .run_as_user(185);
            rows.push(Row {
                label,
                layer: l,
                container: with_jdk(spec, &self.jdk, jdk_at),
                ready: self.ready_line(packaging.entry_point()),
                expected: self.want_java("rhel", os_version, &[("Quarkus", version)]),
            });
        }
    }

    /// WildFly and EAP homes started by their standalone.sh (java a child of the shell). The
    /// WildFly images set no JBOSS_HOME (the script passes -Djboss.home.dir); EAP's do, and
    /// EAP 7.4 runs on a Java 8-style JRE without a release file (TestJBossEAP_7_4_19).
    fn jboss(&self, rows: &mut Vec<Row>) {
        for (label, product, os_version, home, java8) in [
            (
                "wildfly-34-feature-pack",
                JBossProduct::WildFlyFeaturePack {
                    name: "WildFly",
                    version: "34.0.0.Final",
                },
                "9.4",
                "/opt/jboss/wildfly",
                false,
            ),
            (
                "wildfly-30-product-module",
                JBossProduct::WildFlyModuleManifest {
                    name: "WildFly Full",
                    version: "30.0.1.Final",
                },
                "9.2",
                "/opt/jboss/wildfly",
                false,
            ),
            (
                "jboss-eap-8.0",
                JBossProduct::Eap {
                    version: "8.0 Update 6.1",
                },
                "8.10",
                "/opt/eap",
                false,
            ),
            (
                "jboss-eap-7.4-java-8",
                JBossProduct::Eap {
                    version: "7.4.19.GA",
                },
                "8.10",
                "/opt/eap",
                true,
            ),
        ] {
            let l = self.layer(label, &os_release("rhel", os_version));
            let (parent, dir_name) = home.rsplit_once('/').unwrap();
            let host_home = self
                .stand_ins
                .jboss_home(&l.join(parent.trim_start_matches('/')), dir_name, product)
                .unwrap();
            mkdirs_world_writable(
                &host_home,
                &["standalone/log", "standalone/data", "standalone/tmp"],
            );
            let (name, version) = match product {
                JBossProduct::Eap { version } => (EAP_PRODUCT_NAME, version),
                JBossProduct::WildFlyModuleManifest { name, version }
                | JBossProduct::WildFlyFeaturePack { name, version } => (name, version),
            };
            let eap = matches!(product, JBossProduct::Eap { .. });
            let script = format!("{home}/bin/standalone.sh");
            let mut spec = ContainerSpec::new("server", &[&script, "-b", "0.0.0.0"])
                .env("JAVA_OPTS", &JVM_OPTS.join(" "))
                .run_as_user(if eap { 185 } else { 1000 });
            if eap {
                spec = spec.env("JBOSS_HOME", home);
            }
            let (spec, expected) = if java8 {
                // RHEL's layout: JAVA_HOME=/usr/lib/jvm/java-1.8.0 → the versioned JDK's JRE.
                let jdk_dir = "/usr/lib/jvm/java-1.8.0-openjdk";
                link(&l, "usr/lib/jvm/java-1.8.0", "java-1.8.0-openjdk/jre");
                let spec = spec.env("JAVA_HOME", "/usr/lib/jvm/java-1.8.0");
                (
                    with_java8_style_jre(spec, &self.jdk, jdk_dir),
                    self.want_java_no_release("rhel", os_version, &[(name, version)]),
                )
            } else {
                let jdk_at = if eap {
                    "/usr/lib/jvm/java-17-openjdk"
                } else {
                    "/opt/java/openjdk"
                };
                let spec = spec.env("JAVA_HOME", jdk_at);
                (
                    with_jdk(spec, &self.jdk, jdk_at),
                    self.want_java("rhel", os_version, &[(name, version)]),
                )
            };
            rows.push(Row {
                label,
                layer: l,
                container: spec,
                ready: self.ready_line("org.jboss.as.standalone"),
                expected,
            });
        }
    }
}

/// A container running `argv`.
fn container(name: &str, argv: &[String]) -> ContainerSpec {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    ContainerSpec::new(name, &argv)
}

#[test]
fn jvm_runtime_matrix_on_containerd() {
    let started = Instant::now();
    let sb = CriSandbox::start_for("jvm_runtime_matrix_on_containerd");
    let jdk = debian_jdk().unwrap_or_else(|e| panic!("JVM matrix: {e:#}"));
    let tomcat_home = Path::new("/usr/share").join(TOMCAT_PACKAGE);
    require(
        "JVM matrix (Tomcat)",
        (!tomcat_home.join("bin/catalina.sh").is_file())
            .then(|| format!("{TOMCAT_PACKAGE} is not installed (scripts/install-test-deps.sh)")),
    );
    let boot = Instant::now();

    // Versions, from the machine.
    let (java_version, implementor) = jdk_release(&jdk.home).unwrap();
    assert_eq!(
        java_version,
        workloads::deb_upstream_version(&jdk.package).unwrap(),
        "JAVA_VERSION of {}/release is not the version of package {}",
        jdk.home.display(),
        jdk.package
    );
    let tomcat_version = workloads::deb_upstream_version(TOMCAT_PACKAGE).unwrap();
    // Debian builds Tomcat from source and stamps the upstream version into the manifest the
    // extractor reads; were they ever to differ, the jar is what a scanner can know.
    assert_eq!(
        jar_manifest_value(
            &tomcat_home.join("bin/bootstrap.jar"),
            "Implementation-Version"
        )
        .as_deref(),
        Some(tomcat_version.as_str()),
        "bootstrap.jar of {TOMCAT_PACKAGE} does not carry the package's version"
    );

    let work = tempfile::Builder::new()
        .prefix("ri-jvm-")
        .tempdir_in("/tmp")
        .unwrap();
    let stand_ins = StandIns::compile(&work.path().join("stand-ins"), &jdk.home).unwrap();
    let matrix = Matrix {
        work,
        jdk,
        stand_ins,
        java_version,
        implementor,
    };
    let mut rows = Vec::new();
    matrix.plain_java(&mut rows);
    matrix.tomcat(&mut rows, &tomcat_home, &tomcat_version);
    matrix.spring_boot(&mut rows);
    matrix.quarkus(&mut rows);
    matrix.jboss(&mut rows);
    let built = Instant::now();

    let mut running: Vec<(Row, RunningPod)> = Vec::new();
    for row in rows {
        let image = sb
            .import_image(&ImageBuild::busybox_with_layer(
                &format!("localhost/ri-jvm-matrix/{}:1", row.label),
                &row.layer,
            ))
            .unwrap();
        let mut container = row.container.clone();
        container.image = Some(image);
        let pod = sb
            .run_pod(&PodSpec::new(NAMESPACE, row.label).container(container))
            .unwrap_or_else(|e| panic!("{}: {e:#}", row.label));
        running.push((row, pod));
    }
    let pods_started = Instant::now();

    // Each JVM must have reached its application code: a scan of a JVM that failed to start
    // proves nothing (and a start script still running is only a shell).
    let deadline = Instant::now() + READY_WITHIN;
    let not_ready: Vec<String> = running
        .iter()
        .filter(|(row, pod)| !wait_for_log(&sb, pod, &row.container.name, &row.ready, deadline))
        .map(|(row, pod)| {
            format!(
                "{}: no {:?} in the log within {READY_WITHIN:?}; log:\n{}",
                row.label,
                row.ready,
                sb.container_log(pod, &row.container.name)
            )
        })
        .collect();
    assert!(not_ready.is_empty(), "{}", not_ready.join("\n\n"));
    let all_ready = Instant::now();

    let node = scan_node(&sb);
    let scanned = Instant::now();
    let cases: Vec<Case> = running
        .iter()
        .map(|(row, pod)| {
            Case::new(
                row.label,
                &sb,
                pod,
                &row.container.name,
                row.expected.clone(),
            )
        })
        .collect();
    eprintln!(
        "jvm matrix: {} cases; containerd {:?}, build {:?}, images+pods {:?}, ready {:?}, \
         scan {:?}, total {:?}",
        cases.len(),
        boot - started,
        built - boot,
        pods_started - built,
        all_ready - pods_started,
        scanned - all_ready,
        started.elapsed()
    );
    assert_cases(&node, &cases);
}
