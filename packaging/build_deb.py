"""Build the id1-agent Debian package: ``make -f packaging/deb.mk deb`` runs this.

    /usr/bin/python3 packaging/build_deb.py [--out dist] [--work build/deb]

The package is the agent in a virtual environment of its own under /opt/id1, made with Debian's
Python (so its interpreter is /usr/bin/python3.X, a dependency of the package) and filled with
pip: the project's wheel plus its dependencies from PyPI, as pinned by packaging/constraints.txt
(binary wheels only). Nothing is built on the target host except the bytecode, which postinst
compiles. Around it: /usr/bin/id1, the systemd unit, sysusers.d and tmpfiles.d entries, the
example /etc/id1/agent.toml (made from docs/configuration.md), the login hint
/etc/profile.d/id1.sh, a man page, the docs and a machine-readable copyright file that also
names every bundled distribution and its licence.

The result is reproducible for a given source tree, constraints file and SOURCE_DATE_EPOCH
(default: the last commit's time): no build paths inside, no bytecode, sorted members, clamped
times. Downloads are cached in $PIP_CACHE_DIR (deb.mk sets build/pip-cache).
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PACKAGE = "id1-agent"
VENV = "opt/id1"
MAINTAINER = os.environ.get("DEB_MAINTAINER", "ID-1 platform team <id1-agent@example.com>")
KEPT_SCRIPTS = {"id1", "python", "python3"}
"""What stays in /opt/id1/bin: the agent's command and the interpreter links (pip, activate
scripts and the dependencies' own commands would only be misleading there)."""

DESCRIPTION = """\
Description: update agent of the self-hosted ID-1 platform
 id1-agent pulls the vendor's signed release feed (minisign signatures,
 expiry and replay checks), plans which version of every platform capability
 this host should run from the feed, the host's pins and its update policy,
 enforces critical security fixes, deploys them through systemd with health
 checks and automatic rollback, and keeps every deployed manifest for
 rollback.
 .
 Admins use the id1 command or the id1 tui dashboard, usually over SSH, to
 approve updates, pin versions, change policy and roll back; roles come from
 the id1-viewer, id1-approver and id1-admin groups. The agent runs in its own
 Python environment under /opt/id1 as the sandboxed id1-agent.service, which
 starts once /etc/id1/agent.toml names a feed.
"""


def run(*argv: str | Path, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(a) for a in argv), flush=True)
    return subprocess.run([str(a) for a in argv], check=True, **kwargs)


def project_version() -> str:
    text = (REPO / "agent" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M)[1]


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        done = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True, check=True)
        return int(done.stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 1767225600  # 2026-01-01, for a tree without git


# ── the virtual environment ─────────────────────────────────────────────────────────────────


def copy_source(work: Path) -> Path:
    """The files a wheel is built from, copied, so that no stale build/ or egg-info of the
    working tree can leak into the wheel."""
    source = work / "src"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("agent", "tui"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return source


def build_venv(python: Path, root: Path, work: Path) -> Path:
    venv = root / VENV
    run(python, "-m", "venv", venv)
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "--no-input"]
    wheels = work / "wheel"
    run(*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, copy_source(work))
    (wheel,) = wheels.glob("id1_agent-*.whl")
    run(*pip, "install", "--quiet", "--no-compile", "--no-warn-script-location", "--only-binary", ":all:",
        "--constraint", HERE / "constraints.txt", wheel)
    run(*pip, "uninstall", "--quiet", "--yes", "pip", "setuptools")
    tidy_venv(venv)
    return venv


def tidy_venv(venv: Path) -> None:
    bin_dir = venv / "bin"
    for entry in bin_dir.iterdir():
        if entry.name not in KEPT_SCRIPTS and not re.fullmatch(r"python3\.\d+", entry.name):
            entry.unlink()
    # pip wrote the build path into the shebang; the package runs from /opt/id1.
    script = bin_dir / "id1"
    lines = script.read_text(encoding="utf-8").split("\n", 1)
    assert lines[0].startswith("#!") and "python" in lines[0], lines[0]
    script.write_text(f"#!/{VENV}/bin/python3\n" + lines[1], encoding="utf-8")
    # pyvenv.cfg: without the `command =` line that names the build folder.
    cfg = venv / "pyvenv.cfg"
    kept = [line for line in cfg.read_text(encoding="utf-8").splitlines() if not line.startswith("command")]
    cfg.write_text("\n".join(kept) + "\n", encoding="utf-8")
    for direct_url in venv.glob("lib/python3*/site-packages/*.dist-info/direct_url.json"):
        direct_url.unlink()  # the wheel's path on the build machine
    for cache in list(venv.rglob("__pycache__")):
        shutil.rmtree(cache)
    shutil.rmtree(venv / "include", ignore_errors=True)  # empty: nothing is compiled against it
    # Debug symbols and comments out of the bundled extension modules, as dh_strip does.
    objects = sorted(str(p) for p in venv.rglob("*.so*") if p.is_file() and not p.is_symlink())
    if objects:
        run("strip", "--remove-section=.comment", "--remove-section=.note", "--strip-unneeded", *objects)


# ── the files around it ─────────────────────────────────────────────────────────────────────


def install(source: Path, target: Path, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def write(target: Path, data: str | bytes, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    target.chmod(mode)


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as file:
        file.write(data)
    return buffer.getvalue()


def install_files(root: Path, version: str, epoch: int) -> None:
    doc = root / "usr/share/doc" / PACKAGE
    sys.path.insert(0, str(HERE))
    from conffile import conffile_text  # packaging/conffile.py

    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/id1").symlink_to(f"/{VENV}/bin/id1")
    install(REPO / "systemd/id1-agent.service", root / "lib/systemd/system/id1-agent.service")
    install(REPO / "systemd/sysusers.d/id1.conf", root / "usr/lib/sysusers.d/id1.conf")
    install(REPO / "systemd/tmpfiles.d/id1.conf", root / "usr/lib/tmpfiles.d/id1.conf")
    install(HERE / "feed-configured", root / "usr/libexec/id1/feed-configured", 0o755)
    write(root / "etc/id1/agent.toml", conffile_text((REPO / "docs/configuration.md").read_text(encoding="utf-8")))
    install(HERE / "profile.d/id1.sh", root / "etc/profile.d/id1.sh")
    write(root / "usr/share/man/man1/id1.1.gz", gzip_bytes((HERE / "id1.1").read_bytes()))
    install(REPO / "README.md", doc / "README.md")
    for page in sorted((REPO / "docs").glob("*.md")):
        install(page, doc / page.name)
    write(doc / "changelog.gz", gzip_bytes(changelog(version, epoch).encode()))
    install(HERE / "debian/lintian-overrides", root / "usr/share/lintian/overrides" / PACKAGE)


def changelog(version: str, epoch: int) -> str:
    return (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * Release {version} of the ID-1 update agent; see README.md for what it does.\n\n"
        f" -- {MAINTAINER}  {email.utils.formatdate(epoch, usegmt=True).replace('GMT', '+0000')}\n"
    )


# ── copyright: the agent's own terms, then every bundled distribution ────────────────────────

LICENCE_NAMES = {
    "mit": "Expat", "mit license": "Expat", "expat": "Expat",
    "bsd": "BSD-3-clause", "bsd license": "BSD-3-clause", "bsd-3-clause": "BSD-3-clause", "bsd-2-clause": "BSD-2-clause",
    "apache-2.0": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache software license": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "psf-2.0": "PSF-2.0", "python software foundation license": "PSF-2.0",
    "mpl-2.0": "MPL-2.0", "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "isc": "ISC", "isc license (iscl)": "ISC",
}


def licence_of(meta: importlib.metadata.PackageMetadata) -> str:
    """A DEP-5 licence expression from the distribution's License-Expression, License or classifiers."""
    expression = meta.get("License-Expression")
    if expression:
        return " or ".join(LICENCE_NAMES.get(part.strip().lower(), part.strip()) for part in re.split(r"\s+OR\s+", expression))
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License :: ")]
    names = [LICENCE_NAMES.get(c.lower(), c) for c in classifiers if c.lower() != "osi approved"]
    if names:
        return " or ".join(dict.fromkeys(names))
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) < 40:
        return LICENCE_NAMES.get(text.lower(), text)
    return "other"


def copyright_text(venv: Path, epoch: int) -> str:
    year = email.utils.formatdate(epoch).split()[3]
    site = next(venv.glob("lib/python3*/site-packages"))
    paragraphs = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: {PACKAGE}\n"
        "Comment: The ID-1 update agent is proprietary software of the ID-1 platform's vendor;\n"
        " this repository carries no licence that grants rights to others. The agent's\n"
        " Python environment under /opt/id1 also holds the third-party distributions below,\n"
        " each under its own licence; the full texts are in each one's .dist-info folder\n"
        f" under /{site.relative_to(venv.parent.parent)}.",
        f"Files: *\nCopyright: {year} the ID-1 platform's vendor\nLicense: proprietary",
    ]
    licences = set()
    prefix = site.relative_to(venv.parent.parent)  # opt/id1/lib/python3.X/site-packages
    for dist in sorted(importlib.metadata.distributions(path=[str(site)]), key=lambda d: d.metadata["Name"].lower()):
        meta = dist.metadata
        if meta["Name"] == PACKAGE:
            continue
        holders = meta.get("Author") or meta.get("Maintainer") or meta.get("Author-email") or meta.get("Maintainer-email")
        holders = re.sub(r"\s*<[^>]*>", "", holders or "").strip().strip('"') or f"the {meta['Name']} authors"
        licence = licence_of(meta)
        licences.update(part for part in licence.split(" or "))
        top = sorted({Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")})
        patterns = [f"{prefix}/{name}/*" if (site / name).is_dir() else f"{prefix}/{name}" for name in top]
        paragraphs.append(
            "Files: " + "\n ".join(patterns) + "\n"
            f"Copyright: {holders}\n"
            f"License: {licence}\n"
            f" {meta['Name']} {meta['Version']}; see its .dist-info folder for the licence text."
        )
    paragraphs.append(
        "License: proprietary\n"
        " All rights reserved. No part of this software may be copied, modified or\n"
        " distributed except as the ID-1 platform's vendor agrees in writing."
    )
    for licence in sorted(licences - {"proprietary"}):
        common = Path("/usr/share/common-licenses") / licence
        where = (
            f" On Debian systems the full text is in {common}."
            if common.exists()
            else " The full text is in the .dist-info folder of each distribution that uses it."
        )
        paragraphs.append(f"License: {licence}\n{where}")
    return "\n\n".join(paragraphs) + "\n"


# ── control files ───────────────────────────────────────────────────────────────────────────


def shlib_depends(root: Path, work: Path) -> str:
    """dpkg-shlibdeps over the bundled shared objects: the libc and friends they need."""
    objects = sorted(str(p.resolve()) for p in root.rglob("*.so*") if p.is_file() and not p.is_symlink())
    if not objects:
        return ""
    scratch = work / "shlibdeps"
    (scratch / "debian").mkdir(parents=True)
    (scratch / "debian/control").write_text(f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n")
    bundled = sorted({str(Path(p).parent) for p in objects})
    done = run("dpkg-shlibdeps", "-O", "--ignore-missing-info", *[f"-l{d}" for d in bundled], *objects,
               cwd=scratch, capture_output=True, text=True)
    match = re.search(r"^shlibs:Depends=(.*)$", done.stdout, re.M)
    return match[1].strip() if match else ""


def installed_size(root: Path) -> int:
    """As dpkg-gencontrol counts it: each file's size in KiB rounded up, one for every other entry."""
    total = 0
    for path in root.rglob("*"):
        if path.is_relative_to(root / "DEBIAN"):
            continue
        total += -(-path.lstat().st_size // 1024) if path.is_file() and not path.is_symlink() else 1
    return total


def write_control(root: Path, work: Path, version: str, python: Path) -> None:
    debian = root / "DEBIAN"
    debian.mkdir()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    # The venv's interpreter is /usr/bin/python3.X (its binary wheels are built for that X);
    # procps has /bin/kill, which the unit's ExecReload= runs (not in a minimal Debian).
    depends = [python.name, "procps"] + [d.strip() for d in shlib_depends(root, work).split(",") if d.strip()]
    control = (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_size(root)}\n"
        f"Depends: {', '.join(depends)}\n"
        "Recommends: systemd\n"
        "Section: admin\n"
        "Priority: optional\n"
        + DESCRIPTION
    )
    write(debian / "control", control)
    write(debian / "conffiles", "".join(f"/{p.relative_to(root)}\n" for p in sorted((root / "etc").rglob("*")) if p.is_file()))
    for script in ("postinst", "prerm", "postrm"):
        install(HERE / "debian" / script, debian / script, 0o755)
    sums = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.is_relative_to(debian):
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(root)}\n")
    write(debian / "md5sums", "".join(sums))


def normalise(root: Path, epoch: int) -> None:
    """Modes and times that do not depend on the build machine: 0755 for folders and for what is
    meant to run, 0644 for the rest; every time clamped to SOURCE_DATE_EPOCH."""
    executables = {root / VENV / "bin/id1", root / "usr/libexec/id1/feed-configured"} | set((root / "DEBIAN").glob("p*"))
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path in executables else 0o644)
    for path in [root, *root.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "deb")
    parser.add_argument("--python", type=Path, default=Path("/usr/bin/python3"), help="Debian's Python the venv is made with")
    args = parser.parse_args(argv)

    python = args.python.resolve()  # /usr/bin/python3.11: the venv links to the versioned name
    version = project_version()
    epoch = source_date_epoch()
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    os.environ.setdefault("PIP_CACHE_DIR", str(REPO / "build" / "pip-cache"))
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    shutil.rmtree(args.work, ignore_errors=True)
    root = args.work / "root"
    root.mkdir(parents=True)

    venv = build_venv(python, root, args.work)
    install_files(root, version, epoch)
    write(root / "usr/share/doc" / PACKAGE / "copyright", copyright_text(venv, epoch))
    write_control(root, args.work, version, python)
    normalise(root, epoch)

    args.out.mkdir(parents=True, exist_ok=True)
    arch = (root / "DEBIAN/control").read_text().split("Architecture: ")[1].split("\n")[0]
    deb = args.out / f"{PACKAGE}_{version}_{arch}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb)
    print(f"built {deb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
