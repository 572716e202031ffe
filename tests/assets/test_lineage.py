"""Lineage: an asset's parents and children as trees, with each step's cost and the chain's total."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import av
import numpy as np
import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from assets.models import Asset
from assets.services import asset_create_from_bytes
from generations.ingest import outputs_store
from generations.models import AIModel, Generation, Status
from generations.providers.base import Output
from generations.runner import generation_run
from generations.services import generation_create
from orchestration.lineage import MAX_DEPTH, asset_lineage

pytestmark = pytest.mark.django_db


def png(colour: tuple[int, int, int] = (200, 40, 90), size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def wav() -> bytes:
    buf = io.BytesIO()
    signal = (np.sin(np.arange(8000) / 5) * 10000).astype(np.int16)
    with av.open(buf, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(signal[None, :], format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def job(owner: Any, project: Any, model_id: str, inputs: dict[str, Any], *, credits: int, usd: str) -> Generation:
    """A finished job's row, as the worker leaves it; its outputs are stored by the real ingest below."""
    model = AIModel.objects.get(pk=model_id)
    return Generation.objects.create(user=owner, project=project, model=model, inputs=inputs, provider=model.provider,
                                     status=Status.SUCCEEDED, credits_estimated=credits, credits_held=credits,
                                     credits_charged=credits, provider_cost_usd=Decimal(usd))


def ingest(generation: Generation, *files: tuple[str, str, bytes]) -> list[Asset]:
    prepared = [(Output(kind=kind, mime=mime, data=data), io.BytesIO(data), len(data)) for kind, mime, data in files]
    return outputs_store(generation=generation, prepared=prepared)


@pytest.fixture
def voice_over_model(catalog: None) -> AIModel:
    """A catalog entry for a voice-over made to fit a video: text-to-speech with the video as an input."""
    return AIModel.objects.create(
        id="test/voice-over", provider="local", provider_model="voice-over", name="Voice-over",
        operation="text-to-speech", output_kind="audio",
        input_schema={"type": "object", "required": ["video", "script"], "properties": {
            "video": {"type": "string", "format": "asset", "x-asset-kinds": ["video"]},
            "script": {"type": "string"}}})


@pytest.fixture
def chain(owner: Any, project: Any, catalog: None, voice_over_model: AIModel) -> dict[str, Asset]:
    """image (uploaded) → video (image-to-video) → voice-over (takes the video)."""
    still = asset_create_from_bytes(project=project, data=png(), name="still.png")
    to_video = job(owner, project, "fal-ai/kling-video/v1.6/standard/image-to-video",
                   {"prompt": "slow push in", "image_url": str(still.pk)}, credits=40, usd="0.35")
    video = ingest(to_video, ("video", "video/mp4", mp4()))[0]
    to_voice = job(owner, project, "test/voice-over", {"video": str(video.pk), "script": "It begins."},
                   credits=5, usd="0.015")
    voice = ingest(to_voice, ("audio", "audio/wav", wav()))[0]
    return {"still": still, "video": video, "voice": voice}


def ids(nodes: list[Any]) -> list[Any]:
    return [n.asset.pk for n in nodes]


def test_image_to_video_to_voice_over_is_one_chain_with_each_steps_cost(owner: Any, chain: dict[str, Asset]) -> None:
    still, video, voice = chain["still"], chain["video"], chain["voice"]
    assert video.parent_id == still.pk and voice.parent_id == video.pk  # set by ingest from the inputs

    middle = asset_lineage(user=owner, asset_id=video.pk)
    assert ids(middle.parents) == [still.pk] and ids(middle.children) == [voice.pk]
    assert middle.parents[0].via == ["parent", "image_url"] and middle.children[0].via == ["parent", "video"]
    assert (middle.parents[0].cost.credits, middle.parents[0].cost.provider_cost_usd) == (0, Decimal("0"))  # upload
    assert (middle.root.cost.credits, middle.root.cost.provider_cost_usd) == (40, Decimal("0.35"))
    assert (middle.to_make.credits, middle.to_make.provider_cost_usd) == (40, Decimal("0.35"))
    assert (middle.chain.credits, middle.chain.provider_cost_usd) == (45, Decimal("0.365"))
    assert middle.steps == 2 and not middle.truncated

    end = asset_lineage(user=owner, asset_id=voice.pk)
    assert ids(end.parents) == [video.pk] and ids(end.parents[0].links) == [still.pk] and end.children == []
    assert (end.to_make.credits, end.to_make.provider_cost_usd) == (45, Decimal("0.365"))

    start = asset_lineage(user=owner, asset_id=still.pk)
    assert ids(start.children) == [video.pk] and ids(start.children[0].links) == [voice.pk]
    assert start.to_make.credits == 0 and start.chain.credits == 45


def test_a_second_input_links_by_the_generation_inputs_not_only_by_parent(owner: Any, project: Any,
                                                                         catalog: None) -> None:
    photo = asset_create_from_bytes(project=project, data=png((10, 10, 10)), name="photo.png")
    mask = asset_create_from_bytes(project=project, data=png((255, 255, 255)), name="mask.png")
    fill = job(owner, project, "fal-ai/flux-pro/v1/fill",
               {"prompt": "a window", "image_url": str(photo.pk), "mask_url": str(mask.pk)}, credits=6, usd="0.05")
    out = ingest(fill, ("image", "image/png", png((90, 90, 200))))[0]
    # Ingest sets `parent` to one input (which one follows the stored schema's key order, and jsonb on
    # PostgreSQL sorts keys); lineage reads every asset input, so both are parents either way.
    other = mask.pk if out.parent_id == photo.pk else photo.pk

    lineage = asset_lineage(user=owner, asset_id=out.pk)
    via = {n.asset.pk: n.via for n in lineage.parents}
    assert set(via) == {photo.pk, mask.pk} and "parent" not in via[other]
    assert "image_url" in via[photo.pk] and "mask_url" in via[mask.pk]
    from_other = asset_lineage(user=owner, asset_id=other)
    assert ids(from_other.children) == [out.pk] and "parent" not in from_other.children[0].via


def test_a_job_with_several_outputs_counts_once_in_the_total(owner: Any, project: Any, catalog: None) -> None:
    photo = asset_create_from_bytes(project=project, data=png(), name="photo.png")
    edit = job(owner, project, "openai/gpt-image-2.5-flare/edit", {"prompt": "dusk", "image": str(photo.pk)},
               credits=8, usd="0.08")
    outs = ingest(edit, ("image", "image/png", png((1, 2, 3))), ("image", "image/png", png((3, 2, 1))))
    lineage = asset_lineage(user=owner, asset_id=photo.pk)
    assert sorted(ids(lineage.children)) == sorted(a.pk for a in outs)
    assert [n.cost.credits for n in lineage.children] == [8, 8]  # each shows the job that made it...
    assert lineage.chain.credits == 8 and lineage.steps == 1  # ...the chain pays for it once


def test_real_upscales_of_a_sketch_chain_with_the_charged_credits(owner: Any, project: Any, catalog: None) -> None:
    sketch = generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                               inputs={"prompt": "a lighthouse", "width": 256, "height": 256, "steps": 2})
    generation_run(sketch.pk)
    first = Asset.objects.get(generation=sketch)
    upscale = generation_create(user=owner, project_id=project.pk, model_id="local/upscale",
                                inputs={"image": str(first.pk), "scale": 2})
    generation_run(upscale.pk)
    upscale.refresh_from_db()
    assert upscale.status == Status.SUCCEEDED, upscale.error_message
    bigger = Asset.objects.get(generation=upscale)
    lineage = asset_lineage(user=owner, asset_id=bigger.pk)
    sketch.refresh_from_db()
    assert ids(lineage.parents) == [first.pk]
    assert lineage.to_make.credits == sketch.credits_charged + upscale.credits_charged > 0


def test_depth_is_bounded_and_says_so(owner: Any, project: Any) -> None:
    assets = [asset_create_from_bytes(project=project, data=png((0, 0, 0)), name="0.png")]
    for n in range(1, MAX_DEPTH + 3):
        assets.append(asset_create_from_bytes(project=project, data=png((n, 0, 0)), name=f"{n}.png", parent=assets[-1]))
    lineage = asset_lineage(user=owner, asset_id=assets[-1].pk)
    depth, node = 0, lineage.parents
    while node:
        depth, node = depth + 1, node[0].links
    assert depth == MAX_DEPTH and lineage.truncated
    assert not asset_lineage(user=owner, asset_id=assets[5].pk).truncated


def test_a_cycle_in_bad_data_ends_instead_of_looping(owner: Any, project: Any) -> None:
    a = asset_create_from_bytes(project=project, data=png((1, 1, 1)), name="a.png")
    b = asset_create_from_bytes(project=project, data=png((2, 2, 2)), name="b.png", parent=a)
    Asset.objects.filter(pk=a.pk).update(parent=b)  # impossible through the services; guarded anyway
    lineage = asset_lineage(user=owner, asset_id=a.pk)
    assert ids(lineage.parents) == [b.pk]
    again = lineage.parents[0].links
    assert ids(again) == [a.pk] and again[0].repeat and again[0].links == []  # shown, not walked again
    assert ids(lineage.children) == [b.pk] and lineage.children[0].repeat


def test_queries_grow_with_depth_not_with_the_number_of_children(owner: Any, project: Any) -> None:
    root = asset_create_from_bytes(project=project, data=png((5, 5, 5)), name="root.png")
    asset_create_from_bytes(project=project, data=png((6, 6, 6)), name="one.png", parent=root)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            asset_lineage(user=owner, asset_id=root.pk)
        return len(ctx.captured_queries)

    few = queries()
    for n in range(12):
        asset_create_from_bytes(project=project, data=png((n, 9, 9)), name=f"v{n}.png", parent=root)
    assert queries() == few
    assert len(asset_lineage(user=owner, asset_id=root.pk).children) == 13


def test_more_children_than_the_tree_holds_load_only_what_it_shows(owner: Any, project: Any,
                                                                   monkeypatch: Any) -> None:
    monkeypatch.setattr("orchestration.lineage.MAX_NODES", 6)
    root = asset_create_from_bytes(project=project, data=png((7, 7, 7)), name="root.png")
    variations = [asset_create_from_bytes(project=project, data=png((n, 8, 8)), name=f"v{n}.png", parent=root)
                  for n in range(9)]
    with CaptureQueriesContext(connection) as ctx:
        lineage = asset_lineage(user=owner, asset_id=root.pk)
    assert ids(lineage.children) == [v.pk for v in variations[:5]] and lineage.truncated  # the oldest first
    # 5 places left + the root already placed (it could come back as a repeat) + 1 to see there is more.
    assert any("LIMIT 7" in q["sql"] and "parent_id" in q["sql"] for q in ctx.captured_queries)


def test_only_the_owner_sees_a_lineage(owner: Any, outsider: Any, chain: dict[str, Asset]) -> None:
    with pytest.raises(Http404):
        asset_lineage(user=outsider, asset_id=chain["video"].pk)


def test_the_api_returns_both_trees_with_costs(owner_api: Any, outsider_api: Any, chain: dict[str, Asset]) -> None:
    response = owner_api.get(f"/api/v1/assets/{chain['video'].pk}/lineage")
    assert response.status_code == 200
    body = response.json()
    root = body["asset"]
    assert root["id"] == str(chain["video"].pk) and root["step"]["credits"] == 40
    assert root["step"]["model"] == "fal-ai/kling-video/v1.6/standard/image-to-video"
    assert [p["id"] for p in root["parents"]] == [str(chain["still"].pk)]
    assert root["parents"][0]["step"] == {"generation": None, "model": None, "operation": "upload", "credits": 0,
                                          "provider_cost_usd": "0.000000"}
    child = root["children"][0]
    assert child["id"] == str(chain["voice"].pk) and child["step"]["provider_cost_usd"] == "0.015000"
    assert child["children"] == []
    assert body["cost"] == {"to_make": {"credits": 40, "provider_cost_usd": "0.350000"},
                            "chain": {"credits": 45, "provider_cost_usd": "0.365000"}}
    assert body["steps"] == 2 and body["truncated"] is False
    assert outsider_api.get(f"/api/v1/assets/{chain['video'].pk}/lineage").status_code == 404


def test_the_asset_page_draws_the_tree_with_costs(client: Any, owner: Any, chain: dict[str, Asset]) -> None:
    client.force_login(owner)
    html = client.get(reverse("studio:asset", args=[chain["video"].pk])).text
    section = html[html.index('id="lineage"'):html.index('id="duplicates"')]
    assert "Made from" in section and "Made from this" in section
    assert f'data-asset="{chain["still"].pk}"' in section and f'data-asset="{chain["voice"].pk}"' in section
    assert "Cost to make this: <strong>40 credits · $0.35</strong>" in section
    assert "whole chain (2 jobs): <strong>45 credits · $0.365</strong>" in section
    assert "Image to video" in section and "Text to speech" in section and "Upload" in section
