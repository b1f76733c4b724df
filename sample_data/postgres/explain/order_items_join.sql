SELECT oi.id, oi.product_id, p.sku, p.name, oi.quantity, oi.unit_price_cents FROM order_items oi JOIN products p ON p.id = oi.product_id WHERE oi.order_id = 4242 ORDER BY oi.id;
