SELECT w.name, w.city, s.quantity FROM stock s JOIN warehouses w ON w.id = s.warehouse_id WHERE s.sku = 'SKU-01234' ORDER BY w.id;
