//! The runtime matrix of the tests: real programs built by the tests themselves (Go binaries,
//! static C programs and GraalVM-native-image stand-ins, JVM applications laid out like the
//! products' own: see [`jvm`]), where the host's interpreters and JDK live, and the installed
//! Debian packages' versions. Building needs `go`, `gcc` and a JDK (`javac`, `jar`); see
//! `scripts/install-test-deps.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::rootfs::which;

pub mod jvm;

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Upstream version of an installed Debian package, so expectations come from what is
/// installed: `2:1.19~1` → `1.19`, `10.1.60-1~deb12u1` → `10.1.60`, `3.11.2-6+deb12u6` →
/// `3.11.2`.
pub fn deb_upstream_version(package: &str) -> anyhow::Result<String> {
    let full = run(Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]))
        .with_context(|| {
            format!("package {package} is not installed (scripts/install-test-deps.sh)")
        })?;
    Ok(upstream_of(&full))
}

fn upstream_of(full: &str) -> String {
    let no_epoch = full.split_once(':').map_or(full, |(_, v)| v);
    let no_revision = no_epoch.rsplit_once('-').map_or(no_epoch, |(v, _)| v);
    no_revision
        .split(['~', '+'])
        .next()
        .unwrap_or(no_revision)
        .to_owned()
}

/// Why Go workloads cannot be built here, if they cannot.
pub fn go_unavailable() -> Option<String> {
    which("go")
        .is_none()
        .then(|| "`go` not found (install golang-go)".into())
}

/// Why JVM workloads cannot be built here, if they cannot.
pub fn jdk_unavailable() -> Option<String> {
    match jdk_home() {
        Some(home) if home.join("bin/javac").exists() && home.join("bin/jar").exists() => None,
        _ => Some("no JDK with javac and jar (install openjdk-17-jdk-headless)".into()),
    }
}

/// The JDK that `javac` on PATH belongs to (symlinks resolved).
pub fn jdk_home() -> Option<PathBuf> {
    let javac = std::fs::canonicalize(which("javac")?).ok()?;
    Some(javac.parent()?.parent()?.to_path_buf())
}

/// `JAVA_VERSION` and `IMPLEMENTOR` of a JDK's release file.
pub fn jdk_release(home: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(home.join("release"))?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    Ok((get("JAVA_VERSION"), get("IMPLEMENTOR")))
}

/// A static Go program that sleeps forever, built into `dir`; returns (path, `go1.x.y`).
pub fn go_sleeper(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    go_build(
        dir,
        "sleeper",
        "package main\n\nimport \"time\"\n\nfunc main() { time.Sleep(1 << 62) }\n",
    )
}

/// A static (`CGO_ENABLED=0`) Go HTTP server, built into `dir`; returns (path, `go1.x.y`).
/// It listens on `127.0.0.1:<port>` from its first argument, default a free port (pods use the
/// host network, so a fixed port could collide), and answers every request with `ok`.
pub fn go_http_server(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    go_build(
        dir,
        "server",
        r#"package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := "127.0.0.1:0"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening on", ln.Addr())
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
"#,
    )
}

/// Build the one-file module `main_go` as `dir/<name>` with `CGO_ENABLED=0` (static, like a
/// scratch image's binary); returns (path, the toolchain's `go1.x.y`).
fn go_build(dir: &Path, name: &str, main_go: &str) -> anyhow::Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("go.mod"),
        format!("module example.com/{name}\n\ngo 1.17\n"),
    )?;
    std::fs::write(dir.join("main.go"), main_go)?;
    let out = dir.join(name);
    let cache = dir.join(".gocache");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", &cache)
        .env("GOPATH", dir.join(".gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on"))?;
    let version = run(Command::new("go")
        .args(["env", "GOVERSION"])
        .env("GOCACHE", &cache))?;
    Ok((out, version))
}

/// Why C workloads cannot be built here, if they cannot.
pub fn gcc_unavailable() -> Option<String> {
    which("gcc")
        .is_none()
        .then(|| "`gcc` not found (install gcc and libc6-dev)".into())
}

/// A static C program built from `source` as `dir/<name>` (runs in any image, even one with
/// no libc).
pub fn gcc_static(dir: &Path, name: &str, source: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source)?;
    let out = dir.join(name);
    run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src))?;
    Ok(out)
}

/// A stand-in for a GraalVM native image, `dir/application`: a static ELF with a `.svm_heap`
/// section holding `heap` (wrapped in bytes as an image heap has around its strings),
/// `vm_identity` (e.g. Mandrel's `com.oracle.svm.core.VM=…`) as a string in `.rodata`, and a
/// `main` that waits forever.
pub fn native_image_like(
    dir: &Path,
    heap: &str,
    vm_identity: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let rodata = vm_identity
        .map(|s| format!("__attribute__((used)) static const char vm_info[] = \"{s}\";\n"))
        .unwrap_or_default();
    let source = format!(
        "#include <unistd.h>\n\
         __attribute__((used, section(\".svm_heap\"))) static const char heap[] =\n\
         \"\\x01\\x00\\x00\\x00{heap}\\x00\\x00\\x07\";\n\
         {rodata}\
         int main(void) {{ for (;;) pause(); }}\n"
    );
    gcc_static(dir, "application", &source)
}

/// Compile one Java class `fqcn` whose `main` sleeps forever into `classes`.
fn sleeping_class(classes: &Path, fqcn: &str) -> anyhow::Result<()> {
    let (package, name) = fqcn.rsplit_once('.').unwrap_or(("", fqcn));
    let src_dir = classes.with_extension("src");
    std::fs::create_dir_all(&src_dir)?;
    let src = src_dir.join(format!("{name}.java"));
    let pkg = if package.is_empty() {
        String::new()
    } else {
        format!("package {package};\n")
    };
    std::fs::write(
        &src,
        format!("{pkg}public class {name} {{ public static void main(String[] a) throws Exception {{ Thread.sleep(Long.MAX_VALUE); }} }}\n"),
    )?;
    let home = jdk_home().context("no JDK")?;
    run(Command::new(home.join("bin/javac"))
        .arg("-d")
        .arg(classes)
        .arg(&src))?;
    Ok(())
}

fn jar(out: &Path, manifest: &str, classes: &Path) -> anyhow::Result<()> {
    let home = jdk_home().context("no JDK")?;
    jar_of_dir(&home.join("bin/jar"), out, manifest, classes)
}

/// `jar --create` of everything under `classes`, with `manifest` as META-INF/MANIFEST.MF.
fn jar_of_dir(jar_tool: &Path, out: &Path, manifest: &str, classes: &Path) -> anyhow::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mf = out.with_extension("mf");
    std::fs::write(&mf, manifest)?;
    run(Command::new(jar_tool)
        .arg("--create")
        .arg("--file")
        .arg(out)
        .arg("--manifest")
        .arg(&mf)
        .arg("-C")
        .arg(classes)
        .arg("."))?;
    std::fs::remove_file(&mf)?;
    Ok(())
}

/// A Spring Boot-style executable jar at `dir/app.jar` whose launcher class really runs.
pub fn spring_boot_jar(dir: &Path, version: &str) -> anyhow::Result<PathBuf> {
    let launcher = "org.springframework.boot.loader.launch.JarLauncher";
    let classes = dir.join("sb-classes");
    sleeping_class(&classes, launcher)?;
    let out = dir.join("app.jar");
    jar(
        &out,
        &format!("Main-Class: {launcher}\nStart-Class: com.example.App\nSpring-Boot-Version: {version}\n"),
        &classes,
    )?;
    Ok(out)
}

/// A Quarkus fast-jar layout under `dir/quarkus-app/` (`quarkus-run.jar` + the bootstrap
/// runner jar in `lib/boot/`, which holds the real entry point class).
pub fn quarkus_fast_jar(dir: &Path, version: &str) -> anyhow::Result<PathBuf> {
    let entry = "io.quarkus.bootstrap.runner.QuarkusEntryPoint";
    let app = dir.join("quarkus-app");
    let classes = dir.join("q-classes");
    sleeping_class(&classes, entry)?;
    let runner = format!("lib/boot/io.quarkus.quarkus-bootstrap-runner-{version}.jar");
    jar(
        &app.join(&runner),
        &format!(
            "Implementation-Title: quarkus-bootstrap-runner\nImplementation-Version: {version}\n"
        ),
        &classes,
    )?;
    let empty = dir.join("q-empty");
    std::fs::create_dir_all(&empty)?;
    jar(
        &app.join("quarkus-run.jar"),
        &format!("Main-Class: {entry}\nClass-Path: {runner}\n"),
        &empty,
    )?;
    Ok(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions_reduce_to_upstream() {
        assert_eq!(upstream_of("2:1.19~1"), "1.19");
        assert_eq!(upstream_of("10.1.60-1~deb12u1"), "10.1.60");
        assert_eq!(upstream_of("3.11.2-6+deb12u6"), "3.11.2");
        assert_eq!(upstream_of("20.20.2-1nodesource1+repack1"), "20.20.2");
        assert_eq!(upstream_of("17.0.15+6-1~deb12u1"), "17.0.15");
    }
}
