"""What does the network between services cost, and what is the floor physics sets?

Between two traced services, a call is a *client* span in the caller and a *server* span in
the callee (its child, through the propagated trace context). The client span covers the
server span plus everything around it: serialisation, the wire both ways, queueing in the
callee's accept loop or in a proxy, and, on a new connection, the TCP and TLS handshakes. So
``client duration - server duration`` is the network's share of the call; both durations are
measured on one clock each, which makes the difference immune to clock skew between hosts.
``edges`` summarises it per caller -> callee; ``budget.per_request(wb)`` has the same quantity
summed per request (``network_ms``).

Connection reuse decides how often handshakes are paid: ``keep_alive`` counts the client
connections each service saw (the peer address and port its server spans record) against
the requests that came over them, with the HTTP version where spans record it.

And when the application is fast, distance is what is left. ``min_rtt_ms`` is the physical
floor of a round trip: the great-circle distance there and back at the speed of light in
fibre (about two thirds of c, 200 km per millisecond). Real routes cost more, often much more:

- cables follow coasts and sea floors, not great circles, and some pairs of places have no
  direct cable at all (Singapore -> São Paulo goes through the US or Europe);
- every router on the way adds switching and queueing;
- a request on a new connection pays handshakes first: one round trip for TCP, one more for
  TLS 1.3 (two for TLS 1.2), before the request's own round trip.

That is why Singapore -> São Paulo is quoted at about 280 ms while its great-circle floor is
about 160 ms. Nothing in software goes below the floor; edge computing moves the work closer
to the user instead, which lowers the floor itself.

>>> round(network.min_rtt_ms("Singapore", "São Paulo"))
160
>>> network.edges(wb).select("caller", "callee", "calls", "gap_p50_ms")
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence

import polars as pl

from latkit.workbook import Workbook

__all__ = [
    "EARTH_RADIUS_KM",
    "FIBRE_SPEED",
    "PLACES",
    "SPEED_OF_LIGHT_KM_S",
    "distance_km",
    "edges",
    "keep_alive",
    "location",
    "min_rtt_ms",
    "rtt_table",
]

#: The speed of light in vacuum, km/s.
SPEED_OF_LIGHT_KM_S = 299_792.458
#: Light in optical fibre travels at about c / 1.47 (the glass's refractive index): ~2/3 c.
FIBRE_SPEED = 2 / 3
#: The mean radius of the Earth (IUGG), km.
EARTH_RADIUS_KM = 6371.0088

#: Latitude and longitude (degrees) of major cities and of cloud regions (the metro area
#: each region's data centres are in, to within a few tens of km: enough for a floor
#: measured in milliseconds). AWS names have a dash before the number (``us-east-1``),
#: Google Cloud's do not (``us-east1``), Azure's have none at all (``eastus``).
PLACES: dict[str, tuple[float, float]] = {
    # Cities
    "Amsterdam": (52.3676, 4.9041),
    "Ashburn": (39.0438, -77.4874),
    "Auckland": (-36.8485, 174.7633),
    "Bogotá": (4.7110, -74.0721),
    "Buenos Aires": (-34.6037, -58.3816),
    "Cairo": (30.0444, 31.2357),
    "Cape Town": (-33.9249, 18.4241),
    "Chicago": (41.8781, -87.6298),
    "Dallas": (32.7767, -96.7970),
    "Dubai": (25.2048, 55.2708),
    "Dublin": (53.3498, -6.2603),
    "Frankfurt": (50.1109, 8.6821),
    "Hong Kong": (22.3193, 114.1694),
    "Jakarta": (-6.2088, 106.8456),
    "Johannesburg": (-26.2041, 28.0473),
    "Lagos": (6.5244, 3.3792),
    "Lima": (-12.0464, -77.0428),
    "London": (51.5074, -0.1278),
    "Los Angeles": (34.0522, -118.2437),
    "Madrid": (40.4168, -3.7038),
    "Melbourne": (-37.8136, 144.9631),
    "Mexico City": (19.4326, -99.1332),
    "Milan": (45.4642, 9.1900),
    "Montreal": (45.5017, -73.5673),
    "Mumbai": (19.0760, 72.8777),
    "New York": (40.7128, -74.0060),
    "Osaka": (34.6937, 135.5023),
    "Paris": (48.8566, 2.3522),
    "San Francisco": (37.7749, -122.4194),
    "Santiago": (-33.4489, -70.6693),
    "São Paulo": (-23.5505, -46.6333),
    "Seattle": (47.6062, -122.3321),
    "Seoul": (37.5665, 126.9780),
    "Singapore": (1.3521, 103.8198),
    "Stockholm": (59.3293, 18.0686),
    "Sydney": (-33.8688, 151.2093),
    "Tel Aviv": (32.0853, 34.7818),
    "Tokyo": (35.6762, 139.6503),
    "Toronto": (43.6532, -79.3832),
    "Warsaw": (52.2297, 21.0122),
    "Zurich": (47.3769, 8.5417),
    # AWS
    "us-east-1": (39.0438, -77.4874),  # N. Virginia
    "us-east-2": (39.9612, -82.9988),  # Ohio
    "us-west-1": (37.3382, -121.8863),  # N. California
    "us-west-2": (45.8399, -119.7006),  # Oregon
    "ca-central-1": (45.5017, -73.5673),  # Montreal
    "sa-east-1": (-23.5505, -46.6333),  # São Paulo
    "eu-west-1": (53.3498, -6.2603),  # Dublin
    "eu-west-2": (51.5074, -0.1278),  # London
    "eu-west-3": (48.8566, 2.3522),  # Paris
    "eu-central-1": (50.1109, 8.6821),  # Frankfurt
    "eu-north-1": (59.3293, 18.0686),  # Stockholm
    "eu-south-1": (45.4642, 9.1900),  # Milan
    "me-central-1": (25.2048, 55.2708),  # UAE
    "af-south-1": (-33.9249, 18.4241),  # Cape Town
    "ap-south-1": (19.0760, 72.8777),  # Mumbai
    "ap-east-1": (22.3193, 114.1694),  # Hong Kong
    "ap-southeast-1": (1.3521, 103.8198),  # Singapore
    "ap-southeast-2": (-33.8688, 151.2093),  # Sydney
    "ap-northeast-1": (35.6762, 139.6503),  # Tokyo
    "ap-northeast-2": (37.5665, 126.9780),  # Seoul
    "ap-northeast-3": (34.6937, 135.5023),  # Osaka
    # Google Cloud
    "us-central1": (41.2619, -95.8608),  # Council Bluffs, Iowa
    "us-east1": (33.1960, -80.0131),  # Moncks Corner, South Carolina
    "us-east4": (39.0438, -77.4874),  # Ashburn, Virginia
    "us-west1": (45.5946, -121.1787),  # The Dalles, Oregon
    "europe-west1": (50.4491, 3.8184),  # St. Ghislain, Belgium
    "europe-west2": (51.5074, -0.1278),  # London
    "europe-west3": (50.1109, 8.6821),  # Frankfurt
    "europe-west4": (53.4386, 6.8355),  # Eemshaven, Netherlands
    "asia-southeast1": (1.3404, 103.7090),  # Jurong West, Singapore
    "asia-northeast1": (35.6762, 139.6503),  # Tokyo
    "southamerica-east1": (-23.5329, -46.7917),  # Osasco, São Paulo
    "australia-southeast1": (-33.8688, 151.2093),  # Sydney
    # Azure
    "eastus": (36.6676, -78.3875),  # Boydton, Virginia
    "westus2": (47.2343, -119.8526),  # Quincy, Washington
    "westeurope": (52.3676, 4.9041),  # Amsterdam
    "northeurope": (53.3498, -6.2603),  # Dublin
    "uksouth": (51.5074, -0.1278),  # London
    "southeastasia": (1.3521, 103.8198),  # Singapore
    "brazilsouth": (-23.5505, -46.6333),  # São Paulo
}

_ALIASES = {"nyc": "New York", "new york city": "New York", "sf": "San Francisco",
            "la": "Los Angeles", "hk": "Hong Kong"}

Place = str | tuple[float, float]


def _key(name: str) -> str:
    """Accents, case and spacing do not matter: ``"sao  paulo"`` is ``"São Paulo"``."""
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)
    )
    return re.sub(r"[\s_]+", " ", plain.casefold()).strip()


_INDEX = {_key(name): coords for name, coords in PLACES.items()} | {
    alias: PLACES[name] for alias, name in _ALIASES.items()
}


def location(place: Place) -> tuple[float, float]:
    """The (latitude, longitude) of a place name in ``PLACES`` or of a coordinate pair.

    >>> network.location("sao paulo")
    (-23.5505, -46.6333)
    """
    if isinstance(place, str):
        try:
            return _INDEX[_key(place)]
        except KeyError:
            raise KeyError(
                f"{place!r} is not in latkit.analysis.network.PLACES; "
                "give (latitude, longitude) instead"
            ) from None
    lat, lon = (float(v) for v in place)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"not a latitude/longitude pair in degrees: {place!r}")
    return lat, lon


def distance_km(a: Place, b: Place) -> float:
    """The great-circle distance between two places on a spherical Earth (haversine), km.

    >>> round(network.distance_km((0, 0), (0, 90)))   # a quarter of the equator
    10008
    """
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, location(p))) for p in (a, b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def min_rtt_ms(a: Place, b: Place, *, fibre_speed: float = FIBRE_SPEED) -> float:
    """The physical floor of a round trip between two places, in milliseconds.

    There and back along the great circle at ``fibre_speed`` times the speed of light (about
    2/3 in glass). A real route is longer and slower (see the module's notes); this is the
    floor that no code, cache or protocol gets below. Places are names from ``PLACES``
    (cities, AWS / Google Cloud / Azure regions; accents and case optional) or
    ``(latitude, longitude)`` pairs.

    >>> round(network.min_rtt_ms("Singapore", "Sao Paulo"))
    160
    >>> round(network.min_rtt_ms("eu-west-1", (40.7128, -74.0060)), 1)   # Dublin - New York
    51.2
    """
    if not 0 < fibre_speed <= 1:
        raise ValueError("fibre_speed is a fraction of the speed of light, in (0, 1]")
    return 2 * distance_km(a, b) / (fibre_speed * SPEED_OF_LIGHT_KM_S) * 1000


def rtt_table(
    origins: Iterable[Place], destinations: Sequence[Place], *, fibre_speed: float = FIBRE_SPEED
) -> pl.DataFrame:
    """The round-trip floor from each origin to each destination.

    Columns: ``origin, destination, distance_km, min_rtt_ms`` (coordinates are shown as
    ``"lat, lon"``), in the order given.

    >>> network.rtt_table(["São Paulo"], ["sa-east-1", "us-east-1", "ap-southeast-1"])
    """
    def label(p: Place) -> str:
        return p if isinstance(p, str) else f"{p[0]:g}, {p[1]:g}"

    rows = [
        {
            "origin": label(o),
            "destination": label(d),
            "distance_km": distance_km(o, d),
            "min_rtt_ms": min_rtt_ms(o, d, fibre_speed=fibre_speed),
        }
        for o in origins
        for d in destinations
    ]
    schema = {"origin": pl.String, "destination": pl.String,
              "distance_km": pl.Float64, "min_rtt_ms": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


#: The HTTP version a span records (current semantic conventions, then the older name).
_PROTOCOL = """coalesce(attr({a}, 'network.protocol.version'), attr({a}, 'http.flavor'))"""

#: The client connection a server span came in on: peer address and port, in the names of
#: the current and the older semantic conventions. NULL when no port is recorded.
_CONNECTION = """(
    coalesce(attr({a}, 'network.peer.address'), attr({a}, 'client.address'),
             attr({a}, 'net.sock.peer.addr'), attr({a}, 'net.peer.ip'), '')
    || ':' ||
    coalesce(attr({a}, 'network.peer.port'), attr({a}, 'client.port'),
             attr({a}, 'net.sock.peer.port'), attr({a}, 'net.peer.port'))
)"""

#: Each server span with the client span that called it, when that is in the data.
_CALLS = f"""
    SELECT s.service AS callee, c.service AS caller, s.duration_ms AS server_ms,
           c.duration_ms AS client_ms,
           coalesce({_PROTOCOL.format(a="s.attributes")},
                    {_PROTOCOL.format(a="c.attributes")}) AS protocol,
           {_CONNECTION.format(a="s.attributes")} AS connection
    FROM spans AS s
    LEFT JOIN spans AS c
      ON c.trace_id = s.trace_id AND c.span_id = s.parent_span_id AND c.kind = 'client'
    WHERE s.kind = 'server'
"""


def keep_alive(wb: Workbook) -> pl.DataFrame:
    """Are connections reused? Per service and caller, requests against client connections.

    A connection is a distinct peer address and port on the server spans (``net.peer.ip`` /
    ``net.peer.port``, ``client.address`` / ``client.port``, ...). Ephemeral ports can be
    reused by later connections, so ``connections`` is a lower bound over long windows.
    Columns: ``callee, caller`` (the service of the calling client span, ``(not traced)``
    when the server span has none, e.g. a load balancer or a browser), ``requests,
    protocols`` (HTTP versions recorded, e.g. ``1.1``, ``2``), ``connections`` (NULL when no
    peer port is recorded), ``requests_per_connection`` and ``new_connection_share``
    (connections / requests: 1 means a handshake per request, no keep-alive).

    >>> network.keep_alive(wb)
    """
    return wb.sql(
        f"""
        SELECT callee, coalesce(caller, '(not traced)') AS caller,
               count(*) AS requests,
               string_agg(DISTINCT protocol, ', ' ORDER BY protocol) AS protocols,
               nullif(count(DISTINCT connection), 0) AS connections,
               count(connection) / nullif(count(DISTINCT connection), 0)
                   AS requests_per_connection,
               count(DISTINCT connection) / nullif(count(connection), 0)
                   AS new_connection_share
        FROM ({_CALLS})
        GROUP BY ALL
        ORDER BY callee, caller
        """
    )


def edges(wb: Workbook) -> pl.DataFrame:
    """Per caller -> callee service: how many calls, how long, and the network's share.

    Every outgoing HTTP or RPC client span is a call. Where the callee's server span is in
    the data (its parent is the client span), the call is *traced* and its gap, ``client -
    server`` duration, is the wire, queueing and connection setup; otherwise the callee is
    named from the span's peer or URL host and only the client side is known. Columns:
    ``caller, callee, traced, calls, errors`` (client spans with error status),
    ``client_p50_ms, client_p95_ms, client_p99_ms, server_p50_ms, server_p95_ms,
    server_p99_ms, gap_p50_ms, gap_p95_ms, gap_p99_ms, gap_share`` (the gaps' share of all
    client time), and the keep-alive evidence of ``keep_alive``: ``protocols, connections,
    calls_per_connection``. Most calls first.

    >>> network.edges(wb).select("caller", "callee", "calls", "gap_p50_ms", "connections")
    """
    return wb.sql(
        f"""
        WITH pairs AS (
            SELECT c.service AS caller,
                   coalesce(s.service, c.peer,
                            nullif(regexp_extract(coalesce(attr(c.attributes, 'url.full'),
                                                           attr(c.attributes, 'http.url'), ''),
                                                  '://([^/?#]+)', 1), ''),
                            '(unknown)') AS callee,
                   s.span_id IS NOT NULL AS traced,
                   c.status = 'error' AS is_error,
                   c.duration_ms AS client_ms,
                   s.duration_ms AS server_ms,
                   -- greatest() skips NULLs, so an untraced call needs the CASE to keep its NULL
                   CASE WHEN s.span_id IS NOT NULL
                        THEN greatest(c.duration_ms - s.duration_ms, 0) END AS gap_ms,
                   coalesce({_PROTOCOL.format(a="s.attributes")},
                            {_PROTOCOL.format(a="c.attributes")}) AS protocol,
                   {_CONNECTION.format(a="s.attributes")} AS connection
            FROM spans AS c
            LEFT JOIN spans AS s
              ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id AND s.kind = 'server'
            WHERE c.kind = 'client' AND c.category IN ('http_client', 'rpc')
        )
        SELECT caller, callee, traced,
               count(*) AS calls,
               count(*) FILTER (is_error) AS errors,
               quantile_cont(client_ms, 0.50) AS client_p50_ms,
               quantile_cont(client_ms, 0.95) AS client_p95_ms,
               quantile_cont(client_ms, 0.99) AS client_p99_ms,
               quantile_cont(server_ms, 0.50) AS server_p50_ms,
               quantile_cont(server_ms, 0.95) AS server_p95_ms,
               quantile_cont(server_ms, 0.99) AS server_p99_ms,
               quantile_cont(gap_ms, 0.50) AS gap_p50_ms,
               quantile_cont(gap_ms, 0.95) AS gap_p95_ms,
               quantile_cont(gap_ms, 0.99) AS gap_p99_ms,
               sum(gap_ms) / nullif(sum(client_ms) FILTER (traced), 0) AS gap_share,
               string_agg(DISTINCT protocol, ', ' ORDER BY protocol) AS protocols,
               nullif(count(DISTINCT connection), 0) AS connections,
               count(connection) / nullif(count(DISTINCT connection), 0)
                   AS calls_per_connection
        FROM pairs
        GROUP BY caller, callee, traced
        ORDER BY calls DESC, caller, callee
        """
    )
