<div class="totals" x-data>
  <span class="totals-label">Totals</span>
  <template x-for="(sum, i) in $store.tabular.totals" :key="i"><span class="sum" x-text="sum"></span></template>
</div>
