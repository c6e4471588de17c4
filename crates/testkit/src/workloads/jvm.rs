//! JVM applications for the end-to-end matrix, laid out as the real products lay them out:
//! Spring Boot archives (jar and war, every launcher), Quarkus `quarkus-app/` directories
//! (fast-jar and AOT entry points), WildFly / JBoss EAP server homes, a plain application, and
//! Debian's OpenJDK located through its package (never another JDK that happens to be
//! installed).
//!
//! Every launcher and main class is a small stand-in compiled here with that exact name; each
//! really runs: it does what its product's launcher needs to reach the application (Spring
//! Boot's launcher loads `Start-Class` from `BOOT-INF/classes/` or `WEB-INF/classes/` of its
//! own archive, jboss-modules checks the module exists under `-mp`), prints `ready: <what>`
//! and keeps the JVM running. All stand-ins are compiled by one `javac` run ([`StandIns`]):
//! a `javac` start costs about a second on a 2-core CI machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use super::run;

/// What every stand-in prints once it reached the application's code, before it sleeps.
pub const READY: &str = "ready: ";

/// The package that installs `java`, its `release` file and `lib/`: the JRE half of
/// Debian's OpenJDK (`openjdk-17-jdk-headless` adds `javac` and `jar` to the same home).
const DEBIAN_JRE_PACKAGE_GLOB: &str = "openjdk-*-jre-headless";

/// Debian's OpenJDK as installed by its package.
#[derive(Debug, Clone)]
pub struct DebianJdk {
    /// The package that owns `<home>/release` (e.g. `openjdk-17-jre-headless`).
    pub package: String,
    /// `/usr/lib/jvm/java-17-openjdk-amd64`.
    pub home: PathBuf,
    /// Where the home's absolute symlinks lead (`/etc/java-17-openjdk`: `lib/jvm.cfg`,
    /// `conf/security/java.security`, ...): mounted at the same path in a container so the JDK
    /// runs with the package's configuration rather than dangling links.
    pub config_dir: Option<PathBuf>,
}

impl DebianJdk {
    pub fn java(&self) -> PathBuf {
        self.home.join("bin/java")
    }
}

/// Debian's OpenJDK: the installed `openjdk-*-jre-headless` whose home also has `javac` and
/// `jar`. Found through dpkg, so a JDK installed some other way (e.g. a Temurin tarball in
/// `/usr/lib/jvm`) is never picked up by accident.
pub fn debian_jdk() -> anyhow::Result<DebianJdk> {
    let listed = run(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${db:Status-Status} ${Package}\n",
        DEBIAN_JRE_PACKAGE_GLOB,
    ]))
    .context("no Debian OpenJDK package (install openjdk-17-jdk-headless)")?;
    let mut packages: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .collect();
    // Highest feature release first (openjdk-21 before openjdk-17).
    packages.sort_by_key(|p| {
        std::cmp::Reverse(
            p.trim_start_matches("openjdk-")
                .split('-')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    for package in packages {
        let files = run(Command::new("dpkg-query").args(["-L", package]))?;
        let Some(release) = files
            .lines()
            .find(|f| f.starts_with("/usr/lib/jvm/") && f.ends_with("/release"))
        else {
            continue;
        };
        let home = Path::new(release)
            .parent()
            .context("release file without a directory")?
            .to_path_buf();
        if !home.join("bin/javac").is_file() || !home.join("bin/jar").is_file() {
            continue;
        }
        let config_dir = std::fs::canonicalize(home.join("lib/jvm.cfg"))
            .ok()
            .and_then(|cfg| cfg.parent().map(Path::to_path_buf))
            .filter(|dir| !dir.starts_with(&home));
        return Ok(DebianJdk {
            package: package.to_owned(),
            home,
            config_dir,
        });
    }
    bail!(
        "no installed {DEBIAN_JRE_PACKAGE_GLOB} with javac and jar in its home \
         (install openjdk-17-jdk-headless)"
    )
}

/// Spring Boot's launchers, old (< 3.2) and new package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpringLauncher {
    Jar,
    War,
    Properties,
    /// `org.springframework.boot.loader.JarLauncher` (Spring Boot < 3.2).
    LegacyJar,
}

impl SpringLauncher {
    pub fn class_name(self) -> &'static str {
        match self {
            SpringLauncher::Jar => "org.springframework.boot.loader.launch.JarLauncher",
            SpringLauncher::War => "org.springframework.boot.loader.launch.WarLauncher",
            SpringLauncher::Properties => {
                "org.springframework.boot.loader.launch.PropertiesLauncher"
            }
            SpringLauncher::LegacyJar => "org.springframework.boot.loader.JarLauncher",
        }
    }

    /// Where the archive keeps the application's classes.
    fn classes_dir(self) -> &'static str {
        match self {
            SpringLauncher::War => "WEB-INF/classes/",
            _ => "BOOT-INF/classes/",
        }
    }
}

/// Quarkus `quarkus-app/` packagings, told apart by `quarkus-run.jar`'s `Main-Class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarkusPackaging {
    FastJar,
    /// `aot-jar` packaging: the same layout, `AotQuarkusEntryPoint` as the main class.
    Aot,
}

impl QuarkusPackaging {
    pub fn entry_point(self) -> &'static str {
        match self {
            QuarkusPackaging::FastJar => "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
            QuarkusPackaging::Aot => "io.quarkus.bootstrap.runner.AotQuarkusEntryPoint",
        }
    }
}

/// Where a WildFly / EAP home says what it is (the three places of the reference, §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JBossProduct<'a> {
    /// JBoss EAP: `version.txt` (`Red Hat JBoss Enterprise Application Platform - Version
    /// <version>`), beside the product module of slot `eap`.
    Eap { version: &'a str },
    /// WildFly ≤ 30: the product module's exploded `dir/META-INF/MANIFEST.MF`.
    WildFlyModuleManifest { name: &'a str, version: &'a str },
    /// WildFly ≥ 31: `wildfly-feature-pack-product-conf-<version>.jar` in the product module.
    WildFlyFeaturePack { name: &'a str, version: &'a str },
}

/// The product name EAP's `version.txt` carries.
pub const EAP_PRODUCT_NAME: &str = "Red Hat JBoss Enterprise Application Platform";

const SPRING_APP: &str = "com.example.App";
const PLAIN_MAIN: &str = "com.example.Main";
const SPRING_BOOT: &str = "org.springframework.boot.loader.launch.StandInBoot";
const JBOSS_MODULES_MAIN: &str = "org.jboss.modules.Main";

/// The stand-in classes, compiled once.
pub struct StandIns {
    classes: PathBuf,
    jar_tool: PathBuf,
}

/// A main class that prints the ready line and keeps the JVM running.
fn sleeping_main(fqcn: &str) -> String {
    let (package, name) = fqcn.rsplit_once('.').unwrap_or(("", fqcn));
    format!(
        "package {package};\n\
         public class {name} {{\n\
         \x20   public static void main(String[] args) throws Exception {{\n\
         \x20       System.out.println(\"{READY}{fqcn}\");\n\
         \x20       Thread.sleep(Long.MAX_VALUE);\n\
         \x20   }}\n\
         }}\n"
    )
}

/// A Spring Boot launcher that hands over to the shared stand-in loader.
fn spring_launcher(launcher: SpringLauncher) -> String {
    let (package, name) = launcher
        .class_name()
        .rsplit_once('.')
        .unwrap_or(("", launcher.class_name()));
    format!(
        "package {package};\n\
         public class {name} {{\n\
         \x20   public static void main(String[] args) throws Exception {{\n\
         \x20       {SPRING_BOOT}.launch({name}.class, \"{}\", args);\n\
         \x20   }}\n\
         }}\n",
        launcher.classes_dir()
    )
}

/// What Spring Boot's loader does, in short: the application class comes from inside the
/// launcher's own archive (`-Dloader.main` or the manifest's `Start-Class`).
const SPRING_BOOT_SOURCE: &str = r#"package org.springframework.boot.loader.launch;

import java.io.File;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.jar.JarFile;

public final class StandInBoot {
    public static void launch(Class<?> launcher, String classesDir, String[] args) throws Exception {
        File archive = new File(launcher.getProtectionDomain().getCodeSource().getLocation().toURI());
        String start = System.getProperty("loader.main");
        if (start == null) {
            try (JarFile jar = new JarFile(archive)) {
                start = jar.getManifest().getMainAttributes().getValue("Start-Class");
            }
        }
        URL classes = new URL("jar:" + archive.toURI() + "!/" + classesDir);
        ClassLoader loader = new URLClassLoader(new URL[] {classes}, launcher.getClassLoader());
        Thread.currentThread().setContextClassLoader(loader);
        Class.forName(start, true, loader).getMethod("main", String[].class).invoke(null, (Object) args);
    }
}
"#;

/// jboss-modules' `Main`, in short: `-mp <module path> <module>` must name a module that
/// exists under `system/layers/base`, else it fails as the real one does.
const JBOSS_MODULES_SOURCE: &str = r#"package org.jboss.modules;

import java.io.File;

public final class Main {
    public static void main(String[] args) throws Exception {
        String modulePath = null;
        String module = null;
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("-mp") && i + 1 < args.length) {
                modulePath = args[++i];
            } else if (!args[i].startsWith("-")) {
                module = args[i];
                break;
            }
        }
        if (modulePath == null || module == null) {
            System.err.println("usage: -mp <module path> <module> [args]");
            System.exit(1);
        }
        File xml = new File(modulePath, "system/layers/base/" + module.replace('.', '/') + "/main/module.xml");
        if (!xml.isFile()) {
            System.err.println("Module " + module + " not found in " + modulePath);
            System.exit(1);
        }
        System.out.println("ready: " + module);
        Thread.sleep(Long.MAX_VALUE);
    }
}
"#;

impl StandIns {
    /// Compile every stand-in into `dir/classes` with the JDK at `jdk_home`.
    pub fn compile(dir: &Path, jdk_home: &Path) -> anyhow::Result<StandIns> {
        let mut sources: Vec<(String, String)> = vec![
            (PLAIN_MAIN.into(), sleeping_main(PLAIN_MAIN)),
            (SPRING_APP.into(), sleeping_main(SPRING_APP)),
            (SPRING_BOOT.into(), SPRING_BOOT_SOURCE.into()),
            (JBOSS_MODULES_MAIN.into(), JBOSS_MODULES_SOURCE.into()),
        ];
        for launcher in [
            SpringLauncher::Jar,
            SpringLauncher::War,
            SpringLauncher::Properties,
            SpringLauncher::LegacyJar,
        ] {
            sources.push((launcher.class_name().into(), spring_launcher(launcher)));
        }
        for packaging in [QuarkusPackaging::FastJar, QuarkusPackaging::Aot] {
            let entry = packaging.entry_point();
            sources.push((entry.into(), sleeping_main(entry)));
        }
        let src = dir.join("src");
        let classes = dir.join("classes");
        let mut files = Vec::new();
        for (fqcn, text) in &sources {
            let path = src.join(format!("{}.java", fqcn.replace('.', "/")));
            std::fs::create_dir_all(path.parent().context("source path")?)?;
            std::fs::write(&path, text)?;
            files.push(path);
        }
        run(Command::new(jdk_home.join("bin/javac"))
            .arg("-d")
            .arg(&classes)
            .args(&files))?;
        Ok(StandIns {
            classes,
            jar_tool: jdk_home.join("bin/jar"),
        })
    }

    /// The `.class` file of `fqcn`.
    fn class_file(&self, fqcn: &str) -> PathBuf {
        self.classes
            .join(format!("{}.class", fqcn.replace('.', "/")))
    }

    /// `(entry name, file)` for a class at its package path under `prefix`.
    fn entry(&self, prefix: &str, fqcn: &str) -> (String, PathBuf) {
        (
            format!("{prefix}{}.class", fqcn.replace('.', "/")),
            self.class_file(fqcn),
        )
    }

    /// A jar at `out` with `manifest` and `entries` (name inside the jar, source file).
    fn jar(&self, out: &Path, manifest: &str, entries: &[(String, PathBuf)]) -> anyhow::Result<()> {
        let stage = out.with_extension("stage");
        std::fs::create_dir_all(&stage)?;
        for (name, from) in entries {
            let to = stage.join(name);
            std::fs::create_dir_all(to.parent().context("entry path")?)?;
            std::fs::copy(from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
        super::jar_of_dir(&self.jar_tool, out, manifest, &stage)?;
        std::fs::remove_dir_all(&stage)?;
        Ok(())
    }

    /// A plain application: `dir/classes/` (for `java -cp`) and `dir/plain-java-app.jar`
    /// (`Main-Class`, no framework) with main class [`Self::plain_main_class`].
    pub fn plain_app(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let classes = dir.join("classes");
        let (name, from) = self.entry("", PLAIN_MAIN);
        std::fs::create_dir_all(classes.join(&name).parent().context("class path")?)?;
        std::fs::copy(from, classes.join(&name))?;
        let jar = dir.join("plain-java-app.jar");
        self.jar(
            &jar,
            &format!("Main-Class: {PLAIN_MAIN}\n"),
            &[self.entry("", PLAIN_MAIN)],
        )?;
        Ok((classes, jar))
    }

    pub fn plain_main_class(&self) -> &'static str {
        PLAIN_MAIN
    }

    /// A Spring Boot archive `dir/app.jar` (`dir/app.war` for [`SpringLauncher::War`]): the
    /// launcher at the root, the application under `BOOT-INF/classes/` (`WEB-INF/classes/`),
    /// `Main-Class`, `Start-Class` and `Spring-Boot-Version` in the manifest.
    pub fn spring_boot(
        &self,
        dir: &Path,
        launcher: SpringLauncher,
        version: &str,
    ) -> anyhow::Result<PathBuf> {
        let out = dir.join(if launcher == SpringLauncher::War {
            "app.war"
        } else {
            "app.jar"
        });
        let classes = launcher.classes_dir();
        let manifest = format!(
            "Main-Class: {}\nStart-Class: {SPRING_APP}\nSpring-Boot-Version: {version}\n\
             Spring-Boot-Classes: {classes}\n",
            launcher.class_name()
        );
        self.jar(
            &out,
            &manifest,
            &[
                self.entry("", launcher.class_name()),
                self.entry("", SPRING_BOOT),
                self.entry(classes, SPRING_APP),
            ],
        )?;
        Ok(out)
    }

    /// The class the Spring Boot launchers start (their `Start-Class`).
    pub fn spring_start_class(&self) -> &'static str {
        SPRING_APP
    }

    /// A Quarkus `dir/quarkus-app/`: `quarkus-run.jar` (only a manifest: `Main-Class` the
    /// packaging's entry point, `Class-Path` into `lib/boot/`), the bootstrap runner jar that
    /// holds both entry point classes and `Implementation-Version: <version>`, and another
    /// boot jar listed first (it has a version but not the entry point).
    pub fn quarkus_app(
        &self,
        dir: &Path,
        packaging: QuarkusPackaging,
        version: &str,
    ) -> anyhow::Result<PathBuf> {
        let app = dir.join("quarkus-app");
        let logging = "lib/boot/org.jboss.logging.jboss-logging-3.6.1.Final.jar";
        let runner = format!("lib/boot/io.quarkus.quarkus-bootstrap-runner-{version}.jar");
        self.jar(
            &app.join(logging),
            "Implementation-Title: JBoss Logging 3\nImplementation-Version: 3.6.1.Final\n",
            &[],
        )?;
        self.jar(
            &app.join(&runner),
            &format!(
                "Implementation-Title: quarkus-bootstrap-runner\n\
                 Implementation-Version: {version}\n"
            ),
            &[
                self.entry("", QuarkusPackaging::FastJar.entry_point()),
                self.entry("", QuarkusPackaging::Aot.entry_point()),
            ],
        )?;
        self.jar(
            &app.join("quarkus-run.jar"),
            &format!(
                "Main-Class: {}\nClass-Path: {logging} {runner}\n\
                 Implementation-Title: code-with-quarkus\nImplementation-Version: 1.0.0-SNAPSHOT\n",
                packaging.entry_point()
            ),
            &[],
        )?;
        for sub in ["app", "lib/main", "quarkus"] {
            std::fs::create_dir_all(app.join(sub))?;
        }
        Ok(app)
    }

    /// A WildFly / EAP home at `dir/<name>`: `jboss-modules.jar` (`Main-Class:
    /// org.jboss.modules.Main`), the modules `org.jboss.as.standalone` and
    /// `org.jboss.as.product`, `standalone/`, the product's version file, and
    /// `bin/standalone.sh`, which starts the server as WildFly's script does: a foreground
    /// child `java … -jar <home>/jboss-modules.jar -mp <home>/modules org.jboss.as.standalone
    /// -Djboss.home.dir=<home> …` of the shell, `$JAVA_OPTS` included. Returns the home.
    pub fn jboss_home(
        &self,
        dir: &Path,
        name: &str,
        product: JBossProduct,
    ) -> anyhow::Result<PathBuf> {
        let home = dir.join(name);
        let base = home.join("modules/system/layers/base");
        let write = |rel: PathBuf, text: &str| -> anyhow::Result<()> {
            std::fs::create_dir_all(rel.parent().context("path")?)?;
            std::fs::write(&rel, text)?;
            Ok(())
        };
        self.jar(
            &home.join("jboss-modules.jar"),
            &format!(
                "Main-Class: {JBOSS_MODULES_MAIN}\nImplementation-Title: JBoss Modules\n\
                 Implementation-Version: 2.1.5.Final\n"
            ),
            &[self.entry("", JBOSS_MODULES_MAIN)],
        )?;
        write(
            base.join("org/jboss/as/standalone/main/module.xml"),
            "<module name=\"org.jboss.as.standalone\" xmlns=\"urn:jboss:module:1.9\">\n\
             \x20   <main-class name=\"org.jboss.as.server.DomainServerMain\"/>\n</module>\n",
        )?;
        let product_main = base.join("org/jboss/as/product/main");
        write(
            product_main.join("module.xml"),
            "<module name=\"org.jboss.as.product\" xmlns=\"urn:jboss:module:1.9\"/>\n",
        )?;
        let manifest = |name: &str, version: &str| {
            format!(
                "Manifest-Version: 1.0\r\nJBoss-Product-Release-Name: {name}\r\n\
                 JBoss-Product-Release-Version: {version}\r\nJBoss-Product-Console-Slot: main\r\n"
            )
        };
        match product {
            JBossProduct::Eap { version } => {
                write(
                    home.join("version.txt"),
                    &format!("{EAP_PRODUCT_NAME} - Version {version}\n"),
                )?;
                // EAP's own product module (slot `eap`): version.txt outranks it.
                write(
                    base.join("org/jboss/as/product/eap/dir/META-INF/MANIFEST.MF"),
                    &manifest("JBoss EAP", version),
                )?;
            }
            JBossProduct::WildFlyModuleManifest { name, version } => {
                write(
                    product_main.join("dir/META-INF/MANIFEST.MF"),
                    &manifest(name, version),
                )?;
            }
            JBossProduct::WildFlyFeaturePack { name, version } => {
                let mf = manifest(name, version).replace("\r\n", "\n");
                self.jar(
                    &product_main.join(format!("wildfly-feature-pack-product-conf-{version}.jar")),
                    &mf,
                    &[],
                )?;
            }
        }
        write(
            home.join("standalone/configuration/standalone.xml"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<server xmlns=\"urn:jboss:domain:20.0\"/>\n",
        )?;
        write(
            home.join("standalone/configuration/logging.properties"),
            "logger.level=INFO\n",
        )?;
        std::fs::create_dir_all(home.join("standalone/deployments"))?;
        std::fs::create_dir_all(home.join("standalone/log"))?;
        let script = home.join("bin/standalone.sh");
        write(script.clone(), STANDALONE_SH)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(home)
    }
}

/// `bin/standalone.sh`, reduced to the command line WildFly's script builds: the home from
/// the script's location unless `JBOSS_HOME` is set, `$JAVA_HOME/bin/java` else `java`, and
/// java as a foreground child of the shell.
const STANDALONE_SH: &str = r#"#!/bin/sh
DIRNAME=$(dirname "$0")
RESOLVED_JBOSS_HOME=$(cd "$DIRNAME/.." && pwd)
JBOSS_HOME=${JBOSS_HOME:-$RESOLVED_JBOSS_HOME}
JBOSS_BASE_DIR="$JBOSS_HOME/standalone"
JBOSS_LOG_DIR="$JBOSS_BASE_DIR/log"
JBOSS_CONFIG_DIR="$JBOSS_BASE_DIR/configuration"
JBOSS_MODULEPATH="$JBOSS_HOME/modules"
if [ -n "$JAVA_HOME" ]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA=java
fi
echo "JBoss Bootstrap Environment: JBOSS_HOME=$JBOSS_HOME JAVA=$JAVA"
"$JAVA" -D"[Standalone]" $JAVA_OPTS \
    "-Dorg.jboss.boot.log.file=$JBOSS_LOG_DIR/server.log" \
    "-Dlogging.configuration=file:$JBOSS_CONFIG_DIR/logging.properties" \
    -jar "$JBOSS_HOME/jboss-modules.jar" \
    -mp "$JBOSS_MODULEPATH" \
    org.jboss.as.standalone \
    "-Djboss.home.dir=$JBOSS_HOME" \
    "-Djboss.server.base.dir=$JBOSS_BASE_DIR" \
    "$@"
status=$?
echo "java exited with $status"
exit $status
"#;
