def test_operations_list(api):
    r = api.get("/operations")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json() == {"items": [], "next_cursor": None}
