"""Network edges on span pairs with known gaps, and the round-trip floor against hand math."""

from __future__ import annotations

import math

import polars as pl
import pytest

from latkit.analysis import network
from tests.spantree import client, server, workbook

C_KM_PER_MS = 299_792.458 / 1000


def _call(trace: str, start: float, client_ms: float, server_ms: float, **server_attrs: object):  # type: ignore[no-untyped-def]
    """shop calls inventory: a client span and, centred inside it, the callee's server span."""
    root = server(trace, "/checkout", start, start + client_ms + 2)
    call = client(root, start + 1, start + 1 + client_ms, http_url="http://inv:8080/stock/1")
    gap = (client_ms - server_ms) / 2
    callee = server(trace, "/stock/<sku>", start + 1 + gap, start + 1 + gap + server_ms,
                    parent=call, service="inventory", **server_attrs)
    return [root, call, callee]


def test_edges_give_client_server_and_gap_percentiles() -> None:
    spans = []
    for i in range(5):  # gaps 1, 2, 3, 4, 5 ms around servers of 10 ms
        spans += _call(str(i), i * 100.0, client_ms=11 + i, server_ms=10)
    [row] = network.edges(workbook(*spans)).rows(named=True)
    assert (row["caller"], row["callee"], row["traced"], row["calls"]) == (
        "shop", "inventory", True, 5)
    assert row["server_p50_ms"] == pytest.approx(10)
    assert row["client_p50_ms"] == pytest.approx(13)
    assert row["gap_p50_ms"] == pytest.approx(3)
    assert row["gap_p95_ms"] == pytest.approx(4.8)  # linear between ranks: 4 + 0.8 * 1
    assert row["gap_p99_ms"] == pytest.approx(4.96)
    assert row["gap_share"] == pytest.approx(15 / 65)
    assert row["errors"] == 0


def test_gap_ignores_clock_skew_between_hosts() -> None:
    root = server("1", "/checkout", 0, 30)
    call = client(root, 1, 21)
    # The callee's clock runs 50 ms ahead: its span lies outside the client's, same length.
    callee = server("1", "/stock", 55, 67, parent=call, service="inventory")
    [row] = network.edges(workbook(root, call, callee)).rows(named=True)
    assert row["gap_p50_ms"] == pytest.approx(8)


def test_a_call_to_an_untraced_service_is_named_by_its_host() -> None:
    root = server("1", "/pay", 0, 50)
    calls = [
        client(root, 1, 20, http_url="https://api.payments.example:443/charge?x=1",
               status="error"),
        client(root, 21, 40, http_url="https://api.payments.example:443/charge"),
    ]
    [row] = network.edges(workbook(root, *calls)).rows(named=True)
    assert (row["callee"], row["traced"], row["calls"], row["errors"]) == (
        "api.payments.example:443", False, 2, 1)
    assert row["client_p50_ms"] == pytest.approx(19)
    assert row["gap_p50_ms"] is None and row["server_p50_ms"] is None


def test_keep_alive_counts_connections_and_protocols() -> None:
    spans = []
    # Six calls over two kept-alive connections, HTTP/1.1.
    for i in range(6):
        spans += _call(f"k{i}", i * 100.0, 12, 10, net_peer_ip="10.0.0.1",
                       net_peer_port=40000 + i % 2, http_flavor="1.1")
    # Four requests from an untraced client, each on a new connection, HTTP/2.
    spans += [
        server(f"n{i}", "/stock", 1000 + i * 10.0, 1005 + i * 10.0, service="inventory",
               client_address="10.0.0.9", client_port=50000 + i,
               network_protocol_version="2")
        for i in range(4)
    ]
    wb = workbook(*spans)
    ka = {r["caller"]: r for r in network.keep_alive(wb).rows(named=True)
          if r["callee"] == "inventory"}
    assert (ka["shop"]["requests"], ka["shop"]["connections"]) == (6, 2)
    assert ka["shop"]["requests_per_connection"] == 3
    assert ka["shop"]["protocols"] == "1.1"
    untraced = ka["(not traced)"]
    assert (untraced["requests"], untraced["connections"], untraced["protocols"]) == (4, 4, "2")
    assert untraced["new_connection_share"] == 1.0
    edge = network.edges(wb).filter(pl.col("callee") == "inventory").row(0, named=True)
    assert (edge["connections"], edge["calls_per_connection"], edge["protocols"]) == (
        2, 3.0, "1.1")
    # shop's own requests record no peer: no connection count rather than a wrong one.
    assert network.keep_alive(wb).filter(pl.col("callee") == "shop")["connections"][0] is None


def _cosine_law_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance by the spherical law of cosines (not haversine), by hand."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    cos = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(
        lon2 - lon1)
    return 6371.0088 * math.acos(cos)


def test_min_rtt_on_the_equator_and_to_the_pole() -> None:
    quarter = math.pi * 6371.0088 / 2  # a quarter of a great circle: 10,007.5 km
    assert network.distance_km((0, 0), (0, 90)) == pytest.approx(quarter)
    assert network.distance_km((0, 0), (90, 0)) == pytest.approx(quarter)
    assert network.min_rtt_ms((0, 0), (0, 90)) == pytest.approx(
        2 * quarter / (C_KM_PER_MS * 2 / 3))  # ~100.1 ms
    # One degree of the equator is 111.2 km: a round trip of ~1.1 ms in fibre.
    assert network.min_rtt_ms((0, 0), (0, 1)) == pytest.approx(1.113, abs=1e-3)
    assert network.min_rtt_ms((0, 0), (0, 180)) == pytest.approx(
        2 * math.pi * 6371.0088 / (C_KM_PER_MS * 2 / 3))
    assert network.min_rtt_ms("Paris", "Paris") == 0


def test_min_rtt_singapore_sao_paulo_is_about_160_ms_and_names_are_forgiving() -> None:
    singapore, sao_paulo = (1.3521, 103.8198), (-23.5505, -46.6333)
    by_hand = 2 * _cosine_law_km(singapore, sao_paulo) / (C_KM_PER_MS * 2 / 3)
    assert by_hand == pytest.approx(160, abs=1)
    for a, b in [("Singapore", "São Paulo"), ("singapore", "Sao Paulo"),
                 ("SINGAPORE", "sao  paulo"), ("ap-southeast-1", "sa-east-1"),
                 (singapore, "SÃO PAULO")]:
        assert network.min_rtt_ms(a, b) == pytest.approx(by_hand)
    # In vacuum it would be a third less.
    assert network.min_rtt_ms("Singapore", "São Paulo", fibre_speed=1) == pytest.approx(
        by_hand * 2 / 3)


def test_london_new_york_and_cloud_regions_against_hand_math() -> None:
    london, new_york = (51.5074, -0.1278), (40.7128, -74.0060)
    assert network.distance_km("London", "New York") == pytest.approx(
        _cosine_law_km(london, new_york))
    assert network.distance_km("London", "New York") == pytest.approx(5570, abs=10)
    # AWS's us-east-1 (Virginia) and Google's us-east1 (South Carolina) are not the same.
    assert network.location("us-east-1") != network.location("us-east1")


def test_unknown_places_and_bad_coordinates_are_errors() -> None:
    with pytest.raises(KeyError, match="Atlantis"):
        network.min_rtt_ms("Atlantis", "Paris")
    with pytest.raises(ValueError):
        network.min_rtt_ms((91, 0), "Paris")
    with pytest.raises(ValueError):
        network.min_rtt_ms("Paris", "London", fibre_speed=0)


def test_rtt_table_lists_each_pair() -> None:
    frame = network.rtt_table(["São Paulo"], ["sa-east-1", "ap-southeast-1"])
    assert frame.columns == ["origin", "destination", "distance_km", "min_rtt_ms"]
    assert frame["destination"].to_list() == ["sa-east-1", "ap-southeast-1"]
    assert frame["min_rtt_ms"][0] == 0
    assert frame["min_rtt_ms"][1] == pytest.approx(network.min_rtt_ms("Singapore", "São Paulo"))


def test_chart_builders_encode_the_frames_columns() -> None:
    # Chart specs.
    from latkit import charts

    spans = []
    for i in range(3):
        spans += _call(str(i), i * 100.0, client_ms=12, server_ms=10)
    spec = charts.edge_percentiles(network.edges(workbook(*spans))).to_dict()
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["x"]["field"] == "ms"
    assert spec["encoding"]["yOffset"]["field"] == "part"
    table = network.rtt_table(["São Paulo"], ["sa-east-1", "ap-southeast-1"])
    layered = charts.rtt_floors(table, measured_ms=280).to_dict()
    assert [layer["mark"]["type"] for layer in layered["layer"]] == ["bar", "text", "rule"]
    assert layered["layer"][0]["encoding"]["x"]["field"] == "min_rtt_ms"
