import { HttpClient } from '@angular/common/http';
import { Injectable, inject, signal } from '@angular/core';

/** What `/healthz` (file `healthz.json`, written by the build) says about this build. */
export interface Health {
  status: string;
  version: string;
  commit: string;
}

/** What the server says about where it runs (`config.json`, from the ConfigMap). */
export interface RuntimeConfig {
  environment: string;
  banner: string;
}

/**
 * Build and runtime facts shown in the header and footer. The build writes
 * `healthz.json`; the container serves `config.json` from its environment
 * (APP_ENV, APP_BANNER). Both are fetched once at start-up.
 */
@Injectable({ providedIn: 'root' })
export class BuildInfo {
  private readonly http = inject(HttpClient);

  readonly health = signal<Health | null>(null);
  readonly healthError = signal<string>('');
  readonly config = signal<RuntimeConfig>({ environment: '', banner: '' });

  load(): void {
    this.http.get<Health>('healthz.json', { headers: { 'Cache-Control': 'no-cache' } }).subscribe({
      next: (health) => this.health.set(health),
      error: () => this.healthError.set('build information unavailable'),
    });
    this.http.get<RuntimeConfig>('config.json').subscribe({
      next: (config) =>
        this.config.set({
          environment: String(config.environment ?? ''),
          banner: String(config.banner ?? ''),
        }),
      error: () => undefined, // no runtime config: no banner
    });
  }
}
