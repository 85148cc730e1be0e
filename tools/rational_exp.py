"""
Near-best (in fact best, up to ~1e-9 relative in the equioscillation) uniform rational
approximation of exp(x) on x in (-inf, 0], type (2m, 2m), real coefficients, in the form

    r(x) = R_INF + 2 * Re( sum_{k=1..m} GAMMA[k] / (x - POLE[k]) )

with the m poles POLE[k] in the upper half plane (their conjugates are the other m poles,
with conjugate residues).  For a real matrix A and real vector b:

    r(A) b = R_INF*b + 2 * Re( sum_k GAMMA[k] * (A - POLE[k] I)^{-1} b )

i.e. m complex shifted solves.

Method (own implementation):
  1. Caratheodory-Fejer: transplant f(x)=exp(x) to t in [-1,1] by x = S (t-1)/(t+1), S=9,
     compute Chebyshev coefficients c_k of f(x(t)) in mpmath, form the Hankel matrix
     H_ij = c_{1+i+j}; take the eigenvector u belonging to the (n+1)-th largest |eigenvalue|
     (n = 2m); the zeros zeta of u(z) = sum_j u_j z^j inside the unit disk give poles
     t = (zeta + 1/zeta)/2, x = S (t-1)/(t+1).
  2. Residues + constant by linear least squares on Chebyshev points (mpmath).
  3. Nonlinear Remez (Newton on the 4m+2 equioscillation equations in the 4m+1 real
     parameters + levelled error E, exchange of the reference by locating the extrema
     of r - exp on a grid in t and polishing with Newton on e'(x)=0), in mpmath.
  4. Constrained Remez: same but with the extra equation r(0) = 1 and equioscillation at
     4m+1 points in (-inf, 0).  This costs only ~1-1.5% in max error; COEFFS below are these.
     (COEFFS_UNCONSTRAINED hold the true minimax approximants, r(0) = 1 - E_n.)

Levelled errors (mpmath):
   m  n=2m   best E_n             with r(0)=1
   5  10     1.3611205260e-10     1.3812489806e-10
   6  12     1.5794568372e-12     1.5990566442e-12
   7  14     1.8321743783e-14     1.8517592511e-14
   8  16     2.1248537105e-16     2.1448022763e-16
"""
import numpy as np

S_MAP = 9


def generate(m, constrained=True, dps=34, K=72, ncheb=200, S=S_MAP, verbose=False):
    """Compute (r_inf, gammas, poles) for type (2m,2m).  Returns mpmath numbers."""
    import mpmath as mp
    mp.mp.dps = max(dps, 40)
    n = 2 * m
    # --- 1. Chebyshev coefficients of exp(S(t-1)/(t+1)) on Chebyshev-Lobatto points
    N = 2 * K + ncheb
    th = [mp.pi * j / N for j in range(N + 1)]
    fv = []
    for j in range(N + 1):
        t = mp.cos(th[j])
        fv.append(mp.mpf(0) if t + 1 < mp.mpf(10) ** (-30) else mp.exp(S * (t - 1) / (t + 1)))
    c = []
    for k in range(2 * K + 1):
        acc = mp.mpf(0)
        for j in range(N + 1):
            w = mp.mpf(1) / 2 if j in (0, N) else 1
            acc += w * fv[j] * mp.cos(k * th[j])
        c.append(2 * acc / N)
    # --- CF poles
    H = mp.matrix(K, K)
    for i in range(K):
        for j in range(K):
            H[i, j] = c[1 + i + j]
    ev, Q = mp.eigsy(H)
    idx = sorted(range(K), key=lambda i: -abs(ev[i]))
    sigma = abs(ev[idx[n]])
    u = [Q[j, idx[n]] for j in range(K)]
    rts = mp.polyroots(list(reversed(u)), maxsteps=500, extraprec=200)
    inside = [z for z in rts if abs(z) < 1]
    assert len(inside) == n, len(inside)
    poles = [S * ((z + 1 / z) / 2 - 1) / ((z + 1 / z) / 2 + 1) for z in inside]
    poles = sorted([z for z in poles if mp.im(z) > 0], key=lambda z: mp.im(z))
    if verbose:
        print('CF sigma_%d = %s' % (n, mp.nstr(sigma, 12)))
    mp.mp.dps = dps
    tx = lambda t: S * (t - 1) / (t + 1)

    def unpack(p):
        g = [mp.mpc(p[1 + 2 * k], p[2 + 2 * k]) for k in range(m)]
        s = [mp.mpc(p[1 + 2 * m + 2 * k], p[2 + 2 * m + 2 * k]) for k in range(m)]
        return p[0], g, s

    def err(p, x):
        if x == -mp.inf:
            return p[0]
        r0, g, s = unpack(p)
        return r0 + sum(2 * mp.re(g[k] / (x - s[k])) for k in range(m)) - mp.exp(x)

    def dnerr(p, x, order):
        _, g, s = unpack(p)
        if order == 1:
            return sum(-2 * mp.re(g[k] / (x - s[k]) ** 2) for k in range(m)) - mp.exp(x)
        return sum(4 * mp.re(g[k] / (x - s[k]) ** 3) for k in range(m)) - mp.exp(x)

    def jrow(p, x):
        row = [mp.mpf(1)] + [mp.mpf(0)] * (4 * m)
        if x == -mp.inf:
            return row
        _, g, s = unpack(p)
        for k in range(m):
            q = 1 / (x - s[k]); q2 = g[k] * q * q
            row[1 + 2 * k] = 2 * mp.re(q); row[2 + 2 * k] = -2 * mp.im(q)
            row[1 + 2 * m + 2 * k] = 2 * mp.re(q2); row[2 + 2 * m + 2 * k] = -2 * mp.im(q2)
        return row

    # --- 2. least-squares residues for the CF poles
    npts = 400
    A = mp.matrix(npts, 2 * m + 1); b = mp.matrix(npts, 1)
    for i in range(npts):
        x = tx(mp.cos(mp.pi * (i + mp.mpf(1) / 2) / npts))
        A[i, 0] = 1; b[i] = mp.exp(x)
        for k in range(m):
            q = 1 / (x - poles[k]); A[i, 1 + 2 * k] = 2 * mp.re(q); A[i, 2 + 2 * k] = -2 * mp.im(q)
    sol, _ = mp.qr_solve(A, b)
    p = [sol[i] for i in range(2 * m + 1)]
    for k in range(m):
        p += [mp.re(poles[k]), mp.im(poles[k])]

    # --- 3./4. Remez
    G = [tx(mp.cos(mp.pi * j / 3000)) for j in range(1, 3000)]

    def extrema(p):
        pts = [mp.mpf(0)] + G + [-mp.inf]
        ev = [err(p, x) for x in pts]
        segs, cur = [], [0]
        for i in range(1, len(pts)):
            if mp.sign(ev[i]) == mp.sign(ev[cur[0]]) or ev[i] == 0:
                cur.append(i)
            else:
                segs.append(cur); cur = [i]
        segs.append(cur)
        ext = []
        for sg in segs:
            i = max(sg, key=lambda i: abs(ev[i]))
            x = pts[i]
            if 0 < i < len(pts) - 1:
                lo, hi = pts[i + 1], pts[i - 1]
                for _ in range(30):
                    xn = x - dnerr(p, x, 1) / dnerr(p, x, 2)
                    if not (lo < xn < hi):
                        break
                    done = abs(xn - x) < mp.mpf(10) ** (-25) * (1 + abs(x))
                    x = xn
                    if done:
                        break
                if abs(err(p, x)) < abs(ev[i]):
                    x = pts[i]
            ext.append((x, err(p, x)))
        return ext

    def select(ext, k):
        ext = list(ext)
        while len(ext) > k:
            if len(ext) - k == 1:
                ext.pop(0 if abs(ext[0][1]) < abs(ext[-1][1]) else -1)
                continue
            j = min(range(len(ext) - 1), key=lambda j: max(abs(ext[j][1]), abs(ext[j + 1][1])))
            del ext[j:j + 2]
        return ext

    def newton(p, X, E0, con):
        n2 = 4 * m + 2
        p = list(p) + [E0]
        for _ in range(30):
            F = mp.matrix(n2, 1); J = mp.matrix(n2, n2)
            rows = [(x, (-1) ** i) for i, x in enumerate(X)]
            if con:
                rows.append((mp.mpf(0), 0))
            for i, (x, sg) in enumerate(rows):
                F[i] = err(p[:-1], x) - sg * p[-1]
                row = jrow(p[:-1], x)
                for j in range(n2 - 1):
                    J[i, j] = row[j]
                J[i, n2 - 1] = -sg
            d = mp.lu_solve(J, F)
            p = [p[j] - d[j] for j in range(n2)]
            if max(abs(d[j]) for j in range(n2)) < mp.mpf(10) ** (-(dps - 6)):
                break
        return p[:-1]

    def remez(p, con):
        npts = 4 * m + 1 if con else 4 * m + 2
        for it in range(40):
            ext = extrema(p)
            if con and ext[0][0] == 0:
                ext = ext[1:]
            maxe = max(abs(e) for _, e in ext)
            ext = select(ext, npts)
            mine = min(abs(e) for _, e in ext)
            if verbose:
                print('  remez it %d: %d extrema, max %s min %s' % (it, len(ext), mp.nstr(maxe, 12), mp.nstr(mine, 12)))
            if len(ext) == npts and maxe / mine - 1 < mp.mpf('1e-9') and it > 0:
                return p, maxe
            p = newton(p, [x for x, _ in ext], ext[0][1], con)
        return p, maxe

    p, E = remez(p, False)
    if constrained:
        p, E = remez(p, True)
    r0, g, s = unpack(p)
    return r0, g, s, E


def _fmt(z):
    return '(%.17g%+.17gj)' % (float(z.real), float(z.imag))


def emit(results, name):
    """results: {m: (r_inf, gammas, poles, E)} -> python literal text"""
    out = [name + ' = {']
    for m in sorted(results):
        r0, g, s, E = results[m]
        out.append('    %d: dict(' % m)
        out.append('        r_inf=%.17g,' % float(r0))
        out.append('        levelled_error=%.10g,' % float(E))
        out.append('        poles=[' + ',\n               '.join(_fmt(complex(z)) for z in s) + '],')
        out.append('        residues=[' + ',\n                  '.join(_fmt(complex(z)) for z in g) + ']),')
    out.append('}')
    return '\n'.join(out)


def r_eval(x, m, coeffs=None):
    """Evaluate r(x) in double precision (x real array)."""
    C = (coeffs or COEFFS)[m]
    x = np.asarray(x, dtype=float)
    acc = np.zeros(x.shape, dtype=complex)
    for g, s in zip(C['residues'], C['poles']):
        acc += g / (x - s)
    return C['r_inf'] + 2 * acc.real


def sample():
    return np.unique(np.concatenate([
        np.linspace(-1.0, 0.0, 200001),
        np.linspace(-60.0, -1.0, 200001),
        -np.logspace(-16, 10, 200001),
        [0.0, -1e12, -1e15, -1e20, -1e300]]))


def check(coeffs=None, label='COEFFS'):
    x = sample()
    f = np.exp(x)
    print('%s: double-precision check on %d points in [-1e300, 0]' % (label, x.size))
    for m in sorted((coeffs or COEFFS)):
        r = r_eval(x, m, coeffs)
        e = np.abs(r - f)
        i = np.argmax(e)
        r0 = r_eval(np.array([0.0]), m, coeffs)[0]
        print('  m=%d (type %d,%d): max|r-exp| = %.3e at x=%.4g   r(0)-1 = %.2e   r_inf = %.3e   levelled E = %.4e'
              % (m, 2 * m, 2 * m, e[i], x[i], r0 - 1, (coeffs or COEFFS)[m]['r_inf'], (coeffs or COEFFS)[m]['levelled_error']))


if __name__ == '__main__' and 'generate' in __import__('sys').argv:
    # `python rational_exp.py generate` regenerates the literals (a few minutes per m, mpmath):
    print(emit({m: generate(m, True) for m in range(5, 9)}, 'COEFFS'))
    print(emit({m: generate(m, False) for m in range(5, 9)}, 'COEFFS_UNCONSTRAINED'))

# ---------------------------------------------------------------------------------------
# Computed coefficients.  r(x) = r_inf + 2*Re(sum_k residues[k] / (x - poles[k])).

COEFFS = {
    5: dict(
        r_inf=1.381248980600359e-10,
        levelled_error=1.381248981e-10,
        poles=[(4.0424123410339643+1.1938560664553324j),
               (3.2984327567465166+3.5943867723559029j),
               (1.7300858892841724+6.0389349254839191j),
               (-0.879724828094265+8.582756898613388j),
               (-5.1465113985048605+11.375156251916541j)],
        residues=[(-4.8896369563510858-21.365955823670962j),
                  (7.2224148238093244+8.9499577552043679j),
                  (-2.6035252152454276-1.2343738028913451j),
                  (0.27661803800733653+0.014421892211839843j),
                  (-0.00587045189584835+0.00069599317351081694j)]),
    6: dict(
        r_inf=1.5990566441770436e-12,
        levelled_error=1.599056644e-12,
        poles=[(4.8398262962197229+1.1939879912230829j),
               (4.2184570483769601+3.5909207588846161j),
               (2.9302013891379648+6.0173459240923721j),
               (0.86403994077416058+8.5038328256346354j),
               (-2.2236354020720208+11.109296232702841j),
               (-6.9863550645449584+13.995916624970729j)],
        residues=[(-11.945800906504106-46.987566932030361j),
                  (19.019096507463235+20.488413789991544j),
                  (-8.3404861589400756-2.8308897789978964j),
                  (1.3357843851556372-0.18580096503598265j),
                  (-0.069422412128676433+0.038895833245926263j),
                  (0.00082858961011938255-0.00058856771947637498j)]),
    7: dict(
        r_inf=1.851759251130545e-14,
        levelled_error=1.851759251e-14,
        poles=[(5.6337752601713733+1.1940690463439669j),
               (5.0999777480060207+3.5888240290270064j),
               (4.0040023980039647+6.004831642235037j),
               (2.2804165166565089+8.461737973040222j),
               (-0.19812595082473389+10.99126056190126j),
               (-3.6926423619980517+13.656371871483268j),
               (-8.8871404990434932+16.630982619902085j)],
        residues=[(-28.173131123368233-103.23923533204102j),
                  (47.434963752392406+46.131553698143705j),
                  (-23.749414453301405-5.8704470928069643j),
                  (4.8584973165695091-1.3350998810111183j),
                  (-0.3803831075484484+0.33876638561846645j),
                  (0.0095399229725433559-0.017368487336996485j),
                  (-7.2307632200535965e-05+0.00014514554506401135j)]),
    8: dict(
        r_inf=2.1448022762788675e-16,
        levelled_error=2.144802276e-16,
        poles=[(6.4255221104529507+1.1941223933701386j),
               (5.9574966803046943+3.5874573620183221j),
               (5.0025191490715128+5.9968817136039423j),
               (3.5184480197684347+8.4361989858843742j),
               (1.4287203085391824+10.925363484496723j),
               (-1.4045840511353698+13.497725698892745j),
               (-5.2556269320891307+16.220221473167928j),
               (-10.834572667343471+19.277446167181651j)],
        residues=[(-65.106425599021946-226.70294634287899j),
                  (114.46235331482885+102.90431858546948j),
                  (-63.105328052505172-11.295448798626078j),
                  (15.200967768945448-5.8054006590478515j),
                  (-1.4931886921652622+1.7852633670303748j),
                  (0.041408270522388345-0.15891269087638465j),
                  (0.0002135031910956529+0.0044305045917914223j),
                  (-5.1379395872456877e-07-2.4447400184196685e-05j)]),
}

# true minimax (unconstrained) approximants, r(0) = 1 - E
COEFFS_UNCONSTRAINED = {
    5: dict(
        r_inf=1.3611205216478746e-10,
        levelled_error=1.361120522e-10,
        poles=[(4.0277324677412318+1.1938560664746021j),
               (3.2837528834647522+3.5943867724129492j),
               (1.7154060160252418+6.0389349255761049j),
               (-0.89440470131653316+8.5827568987349636j),
               (-5.1611912716725152+11.375156252055399j)],
        residues=[(-4.8183819916826094-21.054597243478177j),
                  (7.1171651054290468+8.8195331603428997j),
                  (-2.5655849554085308-1.2163857066362431j),
                  (0.27258698037344048+0.014211727065793956j),
                  (-0.0057849038600646741+0.0006858507084083629j)]),
    6: dict(
        r_inf=1.5794568369728491e-12,
        levelled_error=1.579456837e-12,
        poles=[(4.8274934521600708+1.19398799122245j),
               (4.2061242043175664+3.5909207588826448j),
               (2.917868545079068+6.0173459240888327j),
               (0.85170709671595002+8.503832825629102j),
               (-2.2359682461294739+11.109296232694595j),
               (-6.9986879086018794+13.995916624958497j)],
        residues=[(-11.799379956022948-46.411635333448643j),
                  (18.785977421539567+20.23728512600125j),
                  (-8.2382559342373245-2.7961912622736165j),
                  (1.3194115340700219-0.18352358288021964j),
                  (-0.068571494249507578+0.038419082887206912j),
                  (0.00081843349925682894-0.00058135358243641773j)]),
    7: dict(
        r_inf=1.832174378231087e-14,
        levelled_error=1.832174378e-14,
        poles=[(5.6231425727480424+1.1940690463440755j),
               (5.0893450605827555+3.5888240290273279j),
               (3.9933697105808346+6.0048316422355574j),
               (2.2697838292335875+8.461737973040913j),
               (-0.20875863824736293+10.991260561902076j),
               (-3.7032750494202906+13.656371871484126j),
               (-8.8977731864652139+16.630982619902831j)],
        residues=[(-27.875161940196971-102.14733999078685j),
                  (46.933274488922592+45.643649768940122j),
                  (-23.498232091134074-5.8083591297377266j),
                  (4.8071120988451375-1.3209793837432295j),
                  (-0.37636003878354063+0.33518347029513329j),
                  (0.0094390253107791873-0.017184791958528317j),
                  (-7.1542880636253319e-05+0.00014361043349587528j)]),
    8: dict(
        r_inf=2.1248537104942859e-16,
        levelled_error=2.12485371e-16,
        poles=[(6.4161776990994772+1.1941223933701388j),
               (5.9481522689512216+3.5874573620183225j),
               (4.9931747377180447+5.9968817136039423j),
               (3.5091036084149718+8.4361989858843724j),
               (1.4193758971857273+10.925363484496717j),
               (-1.4139284624888153+13.497725698892733j),
               (-5.2649713434425642+16.220221473167904j),
               (-10.843917078696892+19.277446167181612j)],
        residues=[(-64.500878025542463-224.59440762653054j),
                  (113.39775178484439+101.94721704216296j),
                  (-62.51839246321088-11.190391094283649j),
                  (15.059585270024229-5.7514052776425304j),
                  (-1.4793007113558756+1.7686588323784069j),
                  (0.041023136835410937-0.15743466173456583j),
                  (0.00021151742182477117+0.0043892969647384089j),
                  (-5.0901521865323557e-07-2.4220017652854505e-05j)]),
}

if __name__ == '__main__':
    check()
    check(COEFFS_UNCONSTRAINED, 'COEFFS_UNCONSTRAINED')
