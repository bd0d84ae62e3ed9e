"""The image store on real skopeo: pulls from OCI layouts the tests write,
pull policies, removal, bad references and corrupt blobs."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess

import pytest

import ocirt
from ocirt import ImageError, InvalidArgument, aio
from ocirt.churn import Job, run_jobs
from ocirt.images.reference import parse
from ocirt.images.store import ImageStore

from .cli_support import Ocirt
from .image_support import busybox_files, tar_layer, write_layout

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (.ci/install installs it)")

CONFIG = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["A=1"], "WorkingDir": "/tmp", "User": "app", "Labels": {"tier": "test"}}


@pytest.fixture
def source(tmp_path):
    """An OCI layout with two images: v1 (busybox, then a layer with a whiteout) and v2 (v1's base, another top)."""
    path = str(tmp_path / "src")
    base = tar_layer(busybox_files())
    write_layout(path, [base, tar_layer({"etc/motd": b"v1\n", "etc/.wh.group": b""})], CONFIG, tag="v1")
    write_layout(path, [base, tar_layer({"etc/motd": b"v2\n"})], CONFIG, tag="v2")
    return path


def test_a_pull_unpacks_each_layer_once_and_keeps_the_images_config(tmp_path, source):
    store = ImageStore(str(tmp_path / "root"))
    v1 = store.pull(f"oci:{source}:v1")
    assert v1.name == f"oci:{source}:v1" and len(v1.layers) == 2
    assert (v1.config.args(), v1.config.env, v1.config.workdir, v1.config.user) == (["/bin/sh", "-c", "echo hi"], {"A": "1"}, "/tmp", "app")
    top, base = store.lower_dirs(v1)
    assert open(os.path.join(top, "etc", "motd")).read() == "v1\n"
    assert os.path.exists(os.path.join(base, "bin", "busybox"))
    v2 = store.pull(f"oci:{source}:v2")
    assert store.lower_dirs(v2)[1] == base  # the shared base: unpacked once
    assert len(os.listdir(store.layers)) == 3
    assert [i.name for i in store.list()] == [v2.name, v1.name]
    assert store.get(v1.id[7:19]) == v1  # by id prefix, as podman
    assert oct(os.stat(store.dir).st_mode & 0o777) == "0o700"


def test_pull_policies_and_removal_of_what_no_image_uses(tmp_path, source):
    store = ImageStore(str(tmp_path / "root"))
    ref = f"oci:{source}:v1"
    with pytest.raises(ImageError, match="pull policy is never"):
        store.pull(ref, policy="never")
    first = store.pull(ref)
    assert store.pull(ref, policy="never") == first
    assert store.pull(ref) is not None and store.pull(ref, policy="always").digest == first.digest
    with pytest.raises(InvalidArgument, match="pull policy"):
        store.pull(ref, policy="sometimes")
    other = store.pull(f"oci:{source}:v2")
    store.remove(ref)
    assert [i.name for i in store.list()] == [other.name]
    assert len(os.listdir(store.layers)) == 2  # v1's top layer went; the shared base stayed
    store.remove(other.name)
    assert os.listdir(store.layers) == [] and os.listdir(os.path.join(store.layout, "blobs", "sha256")) == []
    with pytest.raises(ImageError, match="not in the store"):
        store.remove(ref)


@pytest.mark.parametrize(
    "ref, match",
    [
        ("", "not an image reference"),
        ("Upper/Case", "not a valid image name"),
        ("alpine", "names no registry"),
        ("oci:/nonexistent/layout:v1", "cannot pull"),
        ("SRC:nope", "cannot pull"),
        ("oci-archive:/nonexistent.tar", "cannot pull"),
    ],
)
def test_a_bad_reference_or_missing_image_is_one_clear_error_and_leaves_nothing(tmp_path, source, ref, match):
    store = ImageStore(str(tmp_path / "root"))
    with pytest.raises(ImageError, match=match):
        store.pull(ref.replace("SRC", f"oci:{source}"))
    assert store.list() == []
    assert not os.path.isdir(store.layers) or os.listdir(store.layers) == []
    blobs = os.path.join(store.layout, "blobs", "sha256")
    assert not os.path.isdir(blobs) or os.listdir(blobs) == []


def test_a_corrupt_layer_blob_is_refused_and_leaves_no_layer(tmp_path, source):
    index = json.load(open(os.path.join(source, "index.json")))
    manifest_digest = next(m["digest"] for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "v1")
    manifest = json.load(open(os.path.join(source, "blobs", "sha256", manifest_digest[7:])))
    top = os.path.join(source, "blobs", "sha256", manifest["layers"][1]["digest"][7:])
    data = bytearray(open(top, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(top, "wb").write(bytes(data))
    store = ImageStore(str(tmp_path / "root"))
    with pytest.raises(ImageError):
        store.pull(f"oci:{source}:v1")
    assert store.list() == []
    assert os.listdir(store.layers) == [] and os.listdir(os.path.join(store.layout, "blobs", "sha256")) == []


def _pull(root: str, ref: str) -> str:
    return ImageStore(root).pull(ref).name


def test_two_processes_pulling_into_one_store_keep_both_images(tmp_path, source):
    root = str(tmp_path / "root")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        names = pool.starmap(_pull, [(root, f"oci:{source}:v1"), (root, f"oci:{source}:v2")] * 3)
    assert sorted(set(names)) == [f"oci:{source}:v1", f"oci:{source}:v2"]
    store = ImageStore(root)
    assert sorted(i.name for i in store.list()) == sorted(set(names))
    for image in store.list():
        assert store.pull(image.name, policy="never") == image
        assert len(store.lower_dirs(image)) == 2


def test_references_name_images_as_podman_does():
    assert parse("localhost:5000/app:1").name == "localhost:5000/app:1"
    assert parse("docker://127.0.0.1:5000/app").source == "docker://127.0.0.1:5000/app:latest"
    assert parse("library/busybox").source is None  # a short name is never searched for
    assert parse("oci:rel:v1").name == f"oci:{os.path.abspath('rel')}:v1"
    assert parse("a/b:1").key != parse("a/b:2").key


def test_a_pull_from_a_registry_and_its_errors(tmp_path, source, registry):
    ref = registry.push(f"oci:{source}:v1", "test/app:v1")
    store = ImageStore(str(tmp_path / "root"))
    image = store.pull(ref, tls_verify=False)
    assert image.name == ref and image.config.labels == {"tier": "test"}
    assert open(os.path.join(store.lower_dirs(image)[0], "etc", "motd")).read() == "v1\n"
    with pytest.raises(ImageError, match="cannot pull"):
        store.pull(f"{registry.host}/test/app:nope", tls_verify=False)  # a missing tag
    with pytest.raises(ImageError, match="cannot pull"):
        store.pull(ref, policy="always")  # plain HTTP, while TLS is asked for
    with pytest.raises(ImageError, match="cannot pull"):
        store.pull("127.0.0.1:9/test/app:v1", tls_verify=False)  # nobody listens there
    assert [i.name for i in store.list()] == [ref]


# -- containers from images, on real runc and conmon ----------------------------


def test_a_container_runs_an_image_with_its_config_and_the_callers_options_over_it(runtime, source):
    ref = f"oci:{source}:v1"
    r = runtime.run(["cat /etc/motd; id -un; pwd; echo A=$A; cat /etc/group || echo no group"], image=ref)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "v1\napp\n/tmp\nA=1\nno group\n"  # the image's Cmd replaced; its whiteout hides /etc/group
    r = runtime.run(["id"], image=ref, entrypoint=[], user="root", env={"A": "2"}, workdir="/")
    assert r.stdout.startswith("uid=0(root)")
    assert runtime.run([], image=ref, entrypoint=["/bin/echo"]).stdout == "\n"  # an entrypoint drops the image's Cmd
    with runtime.run(["sh", "-c", "echo mine > /etc/motd; sleep 1000"], image=ref, entrypoint=[], detach=True) as c:
        assert c.labels == {"tier": "test"}
        assert (c.spec.get("annotations") or {})["io.ocirt.image.name"] == ref
    assert runtime.run(["cat", "/etc/motd"], image=ref, entrypoint=[]).stdout == "v1\n"  # each container writes to a layer of its own
    assert runtime.run(["echo", "hi"], image="busybox").stdout == "hi\n"  # built in: no pull


def test_an_image_in_use_is_not_removed_unless_forced_and_bad_input_makes_nothing(runtime, source):
    ref = f"oci:{source}:v1"
    with pytest.raises(ocirt.InvalidArgument, match="one of an image, a rootfs or a bundle"):
        runtime.run(["true"], image=ref, rootfs="/")
    with pytest.raises(ocirt.InvalidArgument, match="entrypoint"):
        runtime.run(["true"], entrypoint=["sh"])
    with pytest.raises(ImageError, match="not in the store"):
        runtime.run(["true"], image=ref, pull="never")
    assert runtime.list() == []
    c = runtime.run(["sleep", "1000"], image=ref, entrypoint=[], detach=True)
    with pytest.raises(ocirt.InvalidState, match="in use by container"):
        runtime.remove_image(ref)
    assert runtime.remove_image(ref, force=True).name == ref
    assert runtime.list() == [] and [i.name for i in runtime.images()] == ["busybox:latest"]  # the built-in one stays
    assert c.deleted


def test_a_container_from_an_image_survives_its_managers_end_like_any_other(tmp_path, source):
    ref = f"oci:{source}:v2"
    root = str(tmp_path / "stored")
    first = ocirt.Runtime.open(root)
    try:
        c = first.run(["sleep", "1000"], image=ref, entrypoint=[], detach=True)
    finally:
        first.close()  # the manager goes; the container runs on
    again = ocirt.Runtime.open(root)
    try:
        found = again.get(c.id)
        assert found.state.status is ocirt.ContainerStatus.RUNNING
        assert found.exec_run(["cat", "/etc/motd"])[1] == "v2\n"
        found.stop(0)
        found.delete()
        assert [i.name for i in again.images()] == [ref, "busybox:latest"]
    finally:
        for leftover in again.list():
            leftover.delete(force=True)
        again.close()


# -- the command line: pull, images, rmi ----------------------------------------


@pytest.fixture
def ocirt_cli(ocirt):  # noqa: F811  (the CLI fixture, beside the module of that name)
    return ocirt


def test_pull_images_and_rmi_on_the_command_line(ocirt_cli, source):
    cli = ocirt_cli
    v1, v2 = f"oci:{source}:v1", f"oci:{source}:v2"
    image_id = cli.ok("pull", v1).strip()
    assert len(image_id) == 64
    cli.ok("pull", "-q", v2)
    table = cli.ok("images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "PULLED", "SIZE"]
    assert any(line.startswith(v1) and image_id[:12] in line for line in table[1:])
    listed = json.loads(cli.ok("images", "--format", "json"))
    assert sorted(i["Names"][0] for i in listed) == sorted([v1, v2, "busybox:latest"])
    assert sorted(cli.ok("images", "-q").split()) == sorted(i["Id"][:12] for i in listed)
    bad = cli("pull", f"oci:{source}:nope")
    assert bad.returncode == 125 and "cannot pull" in bad.stderr
    for image in ("127.0.0.1:9/test/app:v1", f"oci:{source}:nope"):  # nobody listens there; a missing tag
        bad = cli("run", "--rm", "--tls-verify=false", image, "true")
        assert bad.returncode == 125 and "cannot pull" in bad.stderr and bad.stdout == ""
    bundles = os.path.join(cli.root, "bundles")
    assert cli.ok("ps", "-a", "-q") == "" and (not os.path.isdir(bundles) or os.listdir(bundles) == [])
    assert cli("pull", "Not/Valid").returncode == 125
    rt = ocirt.Runtime.open(cli.root)  # a container using v1, made through the library
    try:
        c = rt.run(["sleep", "1000"], image=v1, entrypoint=[], detach=True)
        assert json.loads(cli.ok("ps", "--format", "json"))[0]["Image"] == v1
        assert json.loads(cli.ok("inspect", c.id))[0]["ImageName"] == v1
        refused = cli("rmi", v1)
        assert refused.returncode == 125 and "in use" in refused.stderr
        assert cli.ok("rmi", "-f", v1).splitlines() == [f"Untagged: {v1}", f"Deleted: {image_id}"]
        assert cli.ok("ps", "-a", "-q") == ""
    finally:
        for leftover in rt.list():
            leftover.delete(force=True)
        rt.close()
    assert cli("rmi", v1).returncode == 125  # not held any more
    cli.ok("rmi", "-a")
    assert cli.ok("images", "--format", "json").count('"Id"') == 1  # the built-in busybox, which rmi -a keeps


def test_the_built_in_busybox_is_an_image_that_runs_offline(ocirt_cli):
    cli = ocirt_cli
    listed = json.loads(cli.ok("images", "--format", "json"))
    assert [i["Names"] for i in listed] == [["busybox:latest"]] and len(listed[0]["Id"]) == 64
    assert cli.ok("run", "--rm", "busybox", "echo", "hi") == "hi\n"
    assert cli("run", "--rm", "-i", "busybox", input="echo from sh\n").stdout == "from sh\n"  # its Cmd: sh
    refused = cli("rmi", "busybox")
    assert refused.returncode == 125 and "built-in image" in refused.stderr
    assert json.loads(cli.ok("images", "--format", "json")) == listed


def test_load_save_inspect_and_prune_on_the_command_line(ocirt_cli, source, tmp_path):
    cli = ocirt_cli
    docker_archive = str(tmp_path / "docker.tar")
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{source}:v1", f"docker-archive:{docker_archive}:example.com/app:v1"], check=True)
    assert cli.ok("load", "-i", docker_archive) == "Loaded image: example.com/app:v1\n"
    assert cli.ok("run", "--rm", "example.com/app:v1", "echo $A; cat /etc/motd") == "1\nv1\n"  # its Entrypoint sh -c, its Env
    [shown] = json.loads(cli.ok("image", "inspect", "example.com/app:v1"))
    assert shown["RepoTags"] == ["example.com/app:v1"] and shown["Config"]["Entrypoint"] == ["/bin/sh", "-c"]
    assert shown["Config"]["Env"] == ["A=1"] and len(shown["RootFS"]["Layers"]) == 2 and shown["Os"] == "linux"
    saved = str(tmp_path / "saved.tar")
    cli.ok("save", "-o", saved, "example.com/app:v1")
    other = Ocirt(str(tmp_path / "other"))  # another root reads it back, under the same name and id
    assert other.ok("load", "-q", "-i", saved) == "example.com/app:v1\n"
    assert json.loads(other.ok("image", "inspect", "example.com/app:v1"))[0]["Id"] == shown["Id"]
    assert other.ok("image", "prune") == ""  # no image is unused by being untagged: each has its name
    assert other.ok("image", "prune", "-a").split() == [shown["Id"]]  # no container uses it
    assert os.listdir(os.path.join(other.root, "images", "layers")) == []
    # Bad input: one clear error, nothing written.
    for args, words in [
        (["load", "-i", str(tmp_path / "none.tar")], "No such file"),
        (["load", "-i", source], "not a regular file"),
        (["load", "-i", os.path.join(source, "index.json")], "cannot read the image archive"),
        (["save", "-o", str(tmp_path / "x.tar"), "nope/missing:1"], "not in the store"),
        (["save", "-o", str(tmp_path / "no-dir" / "x.tar"), "example.com/app:v1"], "cannot save"),
        (["save", "-o", str(tmp_path / "x.tar"), "busybox"], "built-in image"),
        (["image", "inspect", "nope/missing:1"], "not in the store"),
    ]:
        proc = cli(*args)
        assert proc.returncode == 125 and words in proc.stderr, (args, proc.stderr)
    assert not os.path.exists(tmp_path / "x.tar") and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert json.loads(cli.ok("image", "inspect", "busybox"))[0]["Config"]["Cmd"] == ["sh"]


def test_churn_jobs_asyncio_and_the_plugins_take_images(runtime, source):
    ref = f"oci:{source}:v2"
    jobs = [Job(["echo $A-%d" % i], image=ref) for i in range(3)] + [Job(["echo", "plain"], image="busybox")]
    results = run_jobs(runtime, jobs, concurrency=2)
    assert [r.stdout for r in results] == ["1-0\n", "1-1\n", "1-2\n", "plain\n"]
    assert [i.name for i in runtime.images()] == [ref, "busybox:latest"]  # pulled once, before the jobs
    with pytest.raises(InvalidArgument, match="an image or a rootfs"):
        Job(["true"], image=ref, rootfs="/")
    with pytest.raises(ImageError, match="not a valid image name"):
        Job(["true"], image="Not/Valid")

    async def on_a_loop() -> None:
        rt = aio.AsyncRuntime(runtime=runtime)
        assert (await rt.pull(f"oci:{source}:v1")).name == f"oci:{source}:v1"
        assert len(rt.images()) == 3
        [r] = await aio.run_jobs(rt, [Job(["cat /etc/motd"], image=f"oci:{source}:v1")])
        assert r.stdout == "v1\n"
        assert (await rt.remove_image(f"oci:{source}:v1")).name == f"oci:{source}:v1"
        await rt.finish_deletes()

    asyncio.run(on_a_loop())


def test_users_are_named_by_the_passwd_and_group_the_layer_stack_shows(runtime, tmp_path):
    """passwd from the base, group from the layer above it; a whiteout or an
    opaque directory above hides them, as the container's overlay does."""
    path = str(tmp_path / "accounts")
    base = tar_layer(busybox_files())
    group = tar_layer({"etc/group": b"root:x:0:\nstaff:x:50:\n"})
    write_layout(path, [base, group], {"Cmd": ["id"]}, tag="group")
    write_layout(path, [base, group, tar_layer({"etc/.wh.passwd": b""})], {"Cmd": ["id"]}, tag="whiteout")
    write_layout(path, [base, tar_layer({"etc/.wh..wh..opq": b"", "etc/hostname": b"x\n"})], {"Cmd": ["id"]}, tag="opaque")
    r = runtime.run([], image=f"oci:{path}:group", user="app:staff")
    assert r.stdout.startswith("uid=1000(app) gid=50(staff)"), r.stdout
    assert runtime.run(["sh", "-c", "echo $HOME"], image=f"oci:{path}:group", user="app").stdout == "/home/app\n"  # HOME: the image's passwd
    for tag in ("whiteout", "opaque"):
        with pytest.raises(InvalidArgument, match="cannot read the container's /etc/passwd"):
            runtime.run([], image=f"oci:{path}:{tag}", user="app")
    assert runtime.list() == []


def test_create_makes_an_images_own_container_and_refuses_a_second_root(runtime, source, rootfs):
    ref = f"oci:{source}:v1"
    c = runtime.create("from-image", image=ref, labels={"mine": "1"})
    assert c.labels == {"tier": "test", "mine": "1"}
    c.start()
    assert c.wait(60) == 0
    assert [r.text for r in c.logs()] == ["hi"]  # its Entrypoint and Cmd: sh -c "echo hi"
    c.delete()
    bundles = os.path.join(runtime.tmp_dir, "bundles")
    assert not os.path.isdir(bundles) or os.listdir(bundles) == []  # the bundle made for it went with it
    for given in (dict(rootfs=rootfs), dict(spec={"root": {"path": "/"}})):
        with pytest.raises(InvalidArgument, match="give no bundle, spec or rootfs"):
            runtime.create("refused", image=ref, **given)
    with pytest.raises(ImageError, match="not in the store"):
        runtime.create("refused", image="nope/missing:1")
    assert runtime.list() == [] and (not os.path.isdir(bundles) or os.listdir(bundles) == [])
