SELECT id, product_id, quantity, unit_price_cents FROM order_items WHERE order_id = 4242 ORDER BY id;
