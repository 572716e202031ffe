from tests.assets.test_gallery_page import _png, browser, Client, pytest  # noqa

@pytest.mark.timeout(120)
def test_dbg(transactional_db, live_server, browser, owner, project):
    from selenium.webdriver.common.by import By
    from assets.services import asset_create_from_bytes
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]):
        asset_create_from_bytes(project=project, data=_png(colour), name=f"swatch-{i}.png")
    session = Client(); session.force_login(owner)
    browser.get(f"{live_server.url}/gallery/")
    browser.add_cookie({"name": "sessionid", "value": session.cookies["sessionid"].value})
    browser.get(f"{live_server.url}/gallery/?page_size=3")
    import time; time.sleep(1)
    print(browser.current_url)
    print(browser.execute_script("return document.documentElement.className"))
    print(browser.execute_script("return !!document.getElementById('lightbox')"))
    browser.save_screenshot("/tmp/h4/shot1.png")
    browser.execute_script("window.errs=[]; window.addEventListener('error', e => window.errs.push(e.message)); window.addEventListener('beforeunload', () => {localStorage.setItem('errs', JSON.stringify(window.errs))}); navigation.addEventListener('navigate', e => { localStorage.setItem('nav', e.destination.url + ' type=' + e.navigationType + ' src=' + (e.sourceElement ? e.sourceElement.outerHTML.slice(0,200) : 'none') + ' ' + new Error().stack) }); document.addEventListener('htmx:beforeRequest', e => { localStorage.setItem('req', (localStorage.getItem('req')||'') + ' ' + e.detail.requestConfig.path + ' from ' + e.detail.elt.tagName + '#' + e.detail.elt.id + ' ' + new Error().stack.slice(0,600)) }); document.addEventListener('click', e => { localStorage.setItem('clicked', e.target.outerHTML.slice(0,200) + ' prevented=' + e.defaultPrevented) })")
    t = browser.find_elements(By.CSS_SELECTOR, "#gallery-items > .tile")[0]
    t.find_element(By.CSS_SELECTOR, ".tile-link").click()
    time.sleep(1)
    print(browser.current_url)
    print(browser.execute_script("return [localStorage.getItem('errs'), localStorage.getItem('clicked'), localStorage.getItem('req'), localStorage.getItem('nav'), (window.errs||[]).join('|')]"))
    browser.save_screenshot("/tmp/h4/shot2.png")
