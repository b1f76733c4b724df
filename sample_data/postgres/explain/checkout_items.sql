SELECT p.sku, oi.quantity FROM order_items oi JOIN products p ON p.id = oi.product_id WHERE oi.order_id = 4242 ORDER BY oi.id LIMIT 3;
