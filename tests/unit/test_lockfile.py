"""requirements.lock is the hashed closure of requirements.txt for Lambda, and `infra.lockfile check` fails CI
when it goes stale. These tests run the real pip against the package index (as `make package` does)."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from infra import lockfile
from infra.lockfile import LOCK, REQUIREMENTS, LockError, Pin, Resolved

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resolved_lock() -> dict[str, Resolved]:
    return lockfile.resolve(LOCK, no_deps=True)


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return lockfile.stage_project(tmp_path_factory.mktemp("stage") / "build")


def _requirements_with(tmp_path: Path, name: str, line: str | None) -> Path:
    """requirements.txt with the pin of `name` replaced by `line` (dropped when None, added when absent)."""
    lines = REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    kept = [text for text in lines if not text.startswith(name + "==")]
    assert line is not None or len(kept) < len(lines), f"{name} is not pinned in requirements.txt"
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join(kept + ([line] if line else [])) + "\n", encoding="utf-8")
    return path


def test_the_real_lock_is_the_closure_of_requirements(resolved_lock):
    roots, locked = lockfile.read_pins(REQUIREMENTS), lockfile.read_pins(LOCK)
    assert lockfile.check_pins(roots, locked) == []
    assert lockfile.check_closure(roots, locked, resolved_lock) == []
    assert set(roots) < set(locked)
    assert all(pin.hashes for pin in locked.values())


def test_check_fails_on_a_requirements_file_with_another_pin(tmp_path):
    locked = lockfile.read_pins(LOCK)["numpy"].version
    other = "2.0.2" if locked != "2.0.2" else "2.2.6"
    requirements = _requirements_with(tmp_path, "numpy", f"numpy=={other}")
    result = subprocess.run([sys.executable, "-m", "infra.lockfile", "--requirements", str(requirements), "check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stderr
    assert f"requirements.txt pins numpy=={other}, the lock has numpy=={locked}" in result.stderr
    assert "requirements.lock is stale" in result.stderr


def test_check_fails_on_a_top_level_pin_missing_from_the_lock(tmp_path):
    requirements = _requirements_with(tmp_path, "pgvector", "pgvector==0.5.1")
    problems = lockfile.check_pins(lockfile.read_pins(requirements), lockfile.read_pins(LOCK))
    assert problems == ["requirements.txt pins pgvector==0.5.1, the lock does not have pgvector"]


def test_check_fails_when_the_lock_holds_what_nothing_needs(tmp_path, resolved_lock):
    requirements = _requirements_with(tmp_path, "pglast", None)
    locked = lockfile.read_pins(LOCK)
    problems = lockfile.check_closure(lockfile.read_pins(requirements), locked, resolved_lock)
    assert problems == [f"the lock pins pglast=={locked['pglast'].version}, which nothing in requirements.txt needs"]


def test_check_fails_when_the_lock_misses_a_dependency(tmp_path):
    # python-dateutil (botocore's) needs six: a lock without six's entry is not the closure.
    text = LOCK.read_text(encoding="utf-8")
    start = text.index("\nsix==") + 1
    end = text.index("\n", text.index("# via", start)) + 1
    assert "python-dateutil" in text[start:end]
    lock = tmp_path / "requirements.lock"
    lock.write_text(text[:start] + text[end:], encoding="utf-8")
    problems = lockfile.check_lock(REQUIREMENTS, lock)
    assert len(problems) == 1 and problems[0].startswith("python-dateutil ")
    assert "requires six" in problems[0] and problems[0].endswith("which the lock lacks")


def test_dependency_markers_and_extras_are_evaluated_for_lambda():
    def package(name: str, version: str, *requires: str) -> Resolved:
        return Resolved(name, version, f"https://example.invalid/{name}.whl", "0" * 64, list(requires))

    resolved = {
        "app": package("app", "1", "lib>=2", "winonly; sys_platform == 'win32'", "old; python_version < '3.8'",
                       "plugin[fast]; python_version >= '3.11'", "docs; extra == 'docs'"),
        "lib": package("lib", "1.5"),
        "plugin": package("plugin", "3", "speedup; extra == 'fast'"),
        "speedup": package("speedup", "1"),
    }
    via, problems = lockfile.walk_closure({"app": Pin("app", "1")}, resolved)
    assert set(via) == {"app", "lib", "plugin", "speedup"}
    assert via["speedup"] == {"plugin"}
    assert problems == ["app 1 requires lib>=2, the lock has 1.5"]


def test_write_produces_a_lock_that_checks_clean(tmp_path):
    lock = tmp_path / "requirements.lock"
    lockfile.write_lock(REQUIREMENTS, lock)
    assert lockfile.check_lock(REQUIREMENTS, lock) == []
    # The same packages as the committed lock (versions of unpinned dependencies may have moved since).
    assert set(lockfile.read_pins(lock)) == set(lockfile.read_pins(LOCK))


def test_stage_installs_exactly_the_lock_for_lambda(staged):
    vendor = staged / "vendor"
    installed = {}
    for metadata in vendor.glob("*.dist-info/METADATA"):
        headers = metadata.read_text(encoding="utf-8").split("\n\n", 1)[0].splitlines()
        fields = dict(line.split(": ", 1) for line in headers if ": " in line)
        installed[canonicalize_name(fields["Name"])] = fields["Version"]
    assert installed == {name: pin.version for name, pin in lockfile.read_pins(LOCK).items()}
    assert (staged / "app.py").is_file() and (staged / "chalicelib").is_dir()
    assert (staged / ".chalice" / "config.json").is_file()
    assert not (staged / "requirements.txt").exists(), "chalice would resolve requirements.txt itself"
    assert not (vendor / "bin").exists() and not list((staged / "chalicelib").rglob("__pycache__"))
    wheel_tags = {line for path in vendor.glob("*.dist-info/WHEEL")
                  for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("Tag: ")}
    assert not [tag for tag in wheel_tags if "macosx" in tag or "win" in tag or "aarch64" in tag]


def _zip_of_metadata(vendor: Path, path: Path, replace: dict[str, tuple[str, str]] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for metadata in sorted(vendor.glob("*.dist-info/METADATA")):
            text = metadata.read_text(encoding="utf-8")
            if metadata.parent.name in (replace or {}):
                old, new = replace[metadata.parent.name]
                text = text.replace(old, new, 1)
            archive.writestr(f"{metadata.parent.name}/METADATA", text)
    return path


def test_zip_check_compares_shipped_versions_with_the_lock(staged, tmp_path):
    locked = lockfile.read_pins(LOCK)
    vendor = staged / "vendor"
    assert lockfile.check_zip(locked, _zip_of_metadata(vendor, tmp_path / "same.zip")) == []

    six = next(vendor.glob("six-*.dist-info")).name
    version = locked["six"].version
    bad = _zip_of_metadata(vendor, tmp_path / "other.zip", {six: (f"Version: {version}", "Version: 1.16.0")})
    with zipfile.ZipFile(bad, "a") as archive:
        archive.writestr("extra_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: extra-pkg\nVersion: 1.0\n")
    assert lockfile.check_zip(locked, bad) == [
        "other.zip ships extra-pkg 1.0, which the lock does not have",
        f"other.zip ships six 1.16.0, the lock has six=={version}",
    ]


def test_stage_refuses_a_wheel_whose_hash_is_not_locked(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.17.0\n", encoding="utf-8")
    lock = tmp_path / "requirements.lock"
    lock.write_text("six==1.17.0 \\\n    --hash=sha256:" + "0" * 64 + "\n", encoding="utf-8")
    with pytest.raises(LockError, match="(?s)could not install requirements.lock.*HASHES"):
        lockfile.stage_project(tmp_path / "build", requirements, lock)


def test_unpinned_or_unhashed_lines_are_refused(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("numpy>=2\n", encoding="utf-8")
    with pytest.raises(LockError, match="numpy>=2 must be pinned exactly"):
        lockfile.read_pins(path)
    path.write_text("numpy==2.2.6 --index-url=https://example.invalid\n", encoding="utf-8")
    with pytest.raises(LockError, match="only `name==version` and --hash"):
        lockfile.read_pins(path)
    assert lockfile.check_pins({}, {"numpy": Pin("numpy", "2.2.6")}) == [
        "the lock pins numpy==2.2.6 without a --hash"]
