"""Which topics exist, with how many partitions and what retention: used by `make up`, tests, k8s Job."""

from __future__ import annotations

from shared.contracts import topics

POS_PARTITIONS = 6
DOMAIN_PARTITIONS = 6


def topic_specs(prefix: str = "") -> dict[str, int]:
    specs = {t: POS_PARTITIONS for t in topics.INBOUND_TOPICS}
    specs |= {t: DOMAIN_PARTITIONS for t in topics.DOMAIN_TOPICS}
    specs |= {topics.dlq(t): 1 for t in (*topics.INBOUND_TOPICS, *topics.DOMAIN_TOPICS)}
    specs[topics.GIFTCARD_REJECTIONS] = 3
    return {prefix + name: n for name, n in specs.items()}


def topic_configs(prefix: str = "") -> dict[str, dict[str, str]]:
    # Domain topics are the read model's history: kept forever so a rebuild can replay them.
    return {prefix + t: {"retention.ms": "-1"} for t in topics.DOMAIN_TOPICS}


def main() -> None:
    """`python -m shared.topology`: create the missing topics (the compose and Kubernetes topic jobs run it)."""
    import asyncio

    from shared.kafka import ensure_topics
    from shared.settings import CommonSettings

    settings = CommonSettings()
    prefix = settings.kafka_topic_prefix
    created = asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, topic_specs(prefix),
                                        config=topic_configs(prefix), timeout_s=120))
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")


if __name__ == "__main__":
    main()
