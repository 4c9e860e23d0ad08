import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';

import { App } from './app';

describe('App', () => {
  beforeEach(async () => {
    await TestBed.configureTestingModule({
      imports: [App],
      providers: [provideRouter([]), provideHttpClient(), provideHttpClientTesting()],
    }).compileComponents();
  });

  it('shows the build version and environment fetched at start-up', async () => {
    const fixture = TestBed.createComponent(App);
    fixture.detectChanges();
    const http = TestBed.inject(HttpTestingController);
    http.expectOne('healthz.json').flush({ status: 'ok', version: '1.2.3', commit: '0123456789abcdef' });
    http.expectOne('config.json').flush({ environment: 'test', banner: 'Test environment' });
    await fixture.whenStable();
    const page = fixture.nativeElement as HTMLElement;
    expect(page.querySelector('[data-testid="app-version"]')?.textContent).toBe('1.2.3');
    expect(page.querySelector('[data-testid="app-commit"]')?.textContent).toBe('0123456789ab');
    expect(page.querySelector('[data-testid="env-name"]')?.textContent).toBe('test');
    expect(page.querySelector('[data-testid="env-banner"]')?.textContent).toBe('Test environment');
    http.verify();
  });

  it('says the build information is unavailable when healthz.json cannot be read', async () => {
    const fixture = TestBed.createComponent(App);
    fixture.detectChanges();
    const http = TestBed.inject(HttpTestingController);
    http.expectOne('healthz.json').flush('nope', { status: 404, statusText: 'Not Found' });
    http.expectOne('config.json').flush('nope', { status: 404, statusText: 'Not Found' });
    await fixture.whenStable();
    const page = fixture.nativeElement as HTMLElement;
    expect(page.querySelector('[data-testid="app-version-missing"]')?.textContent).toContain('unavailable');
    expect(page.querySelector('[data-testid="env-name"]')).toBeNull();
  });
});
