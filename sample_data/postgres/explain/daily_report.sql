SELECT count(*), coalesce(sum(total_cents), 0) FROM orders WHERE created_at >= '2024-03-01'::date AND created_at < '2024-03-02'::date;
